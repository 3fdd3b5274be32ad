"""PPO's clipped objectives (eq. 6-7) against their closed forms."""

import torch

from rpg.ppo import (
    clipped_policy_loss,
    clipped_policy_loss_and_grad,
    clipped_value_loss,
    clipped_value_loss_and_grad,
)


def test_clipped_policy_loss_closed_form_and_gradient():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(50, generator=g, dtype=torch.float64)
    new = (old + 0.4 * torch.randn(50, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = torch.randn(50, generator=g, dtype=torch.float64)
    eps = 0.2
    out = clipped_policy_loss(new, old, adv, eps)
    ratio = (new - old).exp()
    expected = -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    # Samples whose ratio is clipped on the pessimistic side carry no gradient.
    r = ratio.detach()
    clipped = ((adv > 0) & (r > 1 + eps)) | ((adv < 0) & (r < 1 - eps))
    assert clipped.any() and torch.all(new.grad[clipped] == 0)
    torch.testing.assert_close(new.grad[~clipped], (-adv * r / 50)[~clipped])
    torch.testing.assert_close(out.clip_fraction, clipped.double().mean())
    torch.testing.assert_close(out.approx_kl, ((r - 1) - (new.detach() - old)).mean())


def test_masked_positions_do_not_count():
    lp = torch.tensor([[0.1, 0.2, 5.0]])
    old = torch.tensor([[0.0, 0.0, 0.0]])
    adv = torch.tensor([[1.0, -1.0, 100.0]])
    mask = torch.tensor([[True, True, False]])
    full = clipped_policy_loss(lp[:, :2], old[:, :2], adv[:, :2], 0.2)
    masked = clipped_policy_loss(lp, old, adv, 0.2, mask)
    torch.testing.assert_close(masked.loss, full.loss)


def test_clipped_value_loss():
    values = torch.tensor([1.0, 3.0, -2.0])
    old = torch.tensor([0.0, 0.0, 0.0])
    returns = torch.tensor([2.0, 0.5, -2.5])
    clipped = (old + (values - old).clamp(-0.5, 0.5) - returns) ** 2
    expected = 0.5 * torch.maximum((values - returns) ** 2, clipped).mean()
    torch.testing.assert_close(clipped_value_loss(values, old, returns, 0.5), expected)
    torch.testing.assert_close(clipped_value_loss(values, old, returns, None), 0.5 * ((values - returns) ** 2).mean())


def _autograd_reference(loss_fn, x, *args):
    x = x.detach().clone().requires_grad_(True)
    out = loss_fn(x, *args)
    loss = out.loss if hasattr(out, "loss") else out
    (grad,) = torch.autograd.grad(loss, x)
    return out, grad


def test_clipped_policy_loss_and_grad_equal_autograd():
    """Written-out gradient vs autograd (float64): in-range ratios (both branches tie), ratios clipped
    on either side with either sign of the advantage, a ratio exactly on the bound, and a mask."""
    g = torch.Generator().manual_seed(0)
    old = torch.randn(200, generator=g, dtype=torch.float64)
    new = old + 0.4 * torch.randn(200, generator=g, dtype=torch.float64)
    new[0] = old[0] + torch.log(torch.tensor(1.2, dtype=torch.float64))  # ρ on the bound 1 + ε (rounded)
    adv = torch.randn(200, generator=g, dtype=torch.float64)
    adv[1] = 0.0
    mask = torch.rand(200, generator=g) < 0.7
    for m in (None, mask):
        expected, expected_grad = _autograd_reference(clipped_policy_loss, new, old, adv, 0.2, m)
        got, grad = clipped_policy_loss_and_grad(new, old, adv, 0.2, m)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-16)
        ratio = (new - old).exp()
        assert ((ratio > 1.2) | (ratio < 0.8)).sum() > 20 and (grad == 0).sum() > 10  # both regimes are exercised


def test_clipped_value_loss_and_grad_equal_autograd():
    """Both branches of the value clip, the clamp's closed bounds and exact ties (V = V_old)."""
    g = torch.Generator().manual_seed(1)
    old = torch.randn(200, generator=g, dtype=torch.float64)
    values = old + 0.5 * torch.randn(200, generator=g, dtype=torch.float64)
    values[:10] = old[:10]  # V − V_old = 0: the two branches are the same number
    values[10] = old[10] + 0.25  # on the bound
    returns = torch.randn(200, generator=g, dtype=torch.float64)
    old[11], values[11], returns[11] = 0.0, 1.0, 0.625  # a tie with the clipped branch's clamp closed: ½ of 0.75
    mask = torch.rand(200, generator=g) < 0.7
    for clip in (None, 0.25):
        for m in (None, mask):
            expected, expected_grad = _autograd_reference(clipped_value_loss, values, old, returns, clip, m)
            got, grad = clipped_value_loss_and_grad(values, old, returns, clip, m)
            torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-15)
            torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-16)
