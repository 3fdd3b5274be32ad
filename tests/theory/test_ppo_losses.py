"""PPO's clipped objectives (eq. 6-7) against their closed forms."""

import torch

from rpg.ppo import clipped_policy_loss, clipped_value_loss


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
