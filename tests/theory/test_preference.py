"""Preference losses of App. B (eq. 22, 24, 25): special cases, closed forms, analytic gradients."""

import pytest
import torch
import torch.nn.functional as F

from rpg.preference import decoupled_dpo_loss, dpo_loss, implicit_reward_cross_entropy_loss


def _logps(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=torch.float64) * 20) for _ in range(4)]


def test_dpo_matches_its_closed_form():
    pc, pr, rc, rr = _logps()
    beta = 0.1
    out = dpo_loss(pc, pr, rc, rr, beta)
    expected = -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))))
    torch.testing.assert_close(out.losses, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.chosen_rewards, beta * (pc - rc))
    torch.testing.assert_close(out.rejected_rewards, beta * (pr - rr))


def test_decoupled_with_equal_coefficients_is_dpo():
    pc, pr, rc, rr = _logps(seed=1)
    beta = 0.25
    decoupled = decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=beta, omega_prime=beta)
    dpo = dpo_loss(pc, pr, rc, rr, beta)
    torch.testing.assert_close(decoupled.losses, dpo.losses, rtol=0, atol=1e-15)
    torch.testing.assert_close(decoupled.chosen_rewards, dpo.chosen_rewards, rtol=0, atol=1e-15)


def test_decoupled_matches_eq_25():
    pc, pr, rc, rr = _logps(seed=2)
    a, w = 0.3, 0.05
    out = decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=a, omega_prime=w)
    expected = -F.logsigmoid(a * (pc - pr) - w * (rc - rr))
    torch.testing.assert_close(out.losses, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out.losses, dpo_loss(pc, pr, rc, rr, a).losses)


def test_decoupled_moves_in_the_direction_the_formula_says():
    # Raising ω' (more weight on the reference) raises the loss exactly where the reference prefers
    # the chosen completion (rc > rr), and lowers it where it prefers the rejected one.
    pc, pr, rc, rr = _logps(seed=3)
    low = decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=0.2, omega_prime=0.1).losses
    high = decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=0.2, omega_prime=0.3).losses
    reference_prefers_chosen = rc > rr
    assert torch.all((high > low)[reference_prefers_chosen])
    assert torch.all((high < low)[~reference_prefers_chosen])


def test_decoupled_gradient_is_the_analytic_one():
    pc, pr, rc, rr = _logps(seed=4)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    a, w = 0.4, 0.15
    decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=a, omega_prime=w).losses.sum().backward()
    # L = −log σ(z), z = α̂(pc − pr) − ω'(rc − rr):  ∂L/∂pc = −α̂·σ(−z),  ∂L/∂pr = +α̂·σ(−z)
    z = a * (pc.detach() - pr.detach()) - w * (rc - rr)
    torch.testing.assert_close(pc.grad, -a * torch.sigmoid(-z), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(pr.grad, a * torch.sigmoid(-z), rtol=1e-12, atol=1e-14)


def test_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = _logps(seed=5)
    eps, beta = 0.1, 0.2
    h = beta * ((pc - rc) - (pr - rr))
    expected = -(1 - eps) * F.logsigmoid(h) - eps * F.logsigmoid(-h)
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps).losses, expected)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pc, pr, rc, rr, beta, label_smoothing=0.7)


def test_cross_entropy_matches_eq_24():
    pc, pr, rc, rr = _logps(seed=6)
    beta = 0.1
    labels = torch.linspace(0, 1, pc.numel(), dtype=torch.float64)
    out = implicit_reward_cross_entropy_loss(pc, pr, rc, rr, beta, labels)
    sig_w = torch.sigmoid(beta * (pc - rc))
    sig_l = torch.sigmoid(beta * (pr - rr))
    expected = -(labels * torch.log(sig_w) + (1 - labels) * torch.log(1 - sig_l))
    torch.testing.assert_close(out.losses, expected, rtol=1e-10, atol=1e-12)


def test_cross_entropy_default_label_scores_only_the_chosen_side():
    pc, pr, rc, rr = _logps(seed=7)
    out = implicit_reward_cross_entropy_loss(pc, pr, rc, rr, beta=0.3)
    torch.testing.assert_close(out.losses, -F.logsigmoid(0.3 * (pc - rc)))
    other = implicit_reward_cross_entropy_loss(pc, pr * 2, rc, rr, beta=0.3)  # rejected side is ignored at l = 1
    torch.testing.assert_close(out.losses, other.losses)


def test_bad_input_fails_in_one_line():
    pc, pr, rc, rr = _logps()
    with pytest.raises(ValueError, match=r"preference labels must lie in \[0, 1\]"):
        implicit_reward_cross_entropy_loss(pc, pr, rc, rr, 0.1, labels=torch.full_like(pc, 1.5))
    with pytest.raises(ValueError, match="alpha_hat must be > 0"):
        decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=0.0, omega_prime=0.1)
    with pytest.raises(ValueError, match="alpha_hat must be a finite number >= 0"):
        decoupled_dpo_loss(pc, pr, rc, rr, alpha_hat=-1.0, omega_prime=0.1)
    with pytest.raises(ValueError, match="beta must be > 0"):
        implicit_reward_cross_entropy_loss(pc, pr, rc, rr, 0.0)
