"""The reparameterized reward (eq. 8) and its special cases, exactly."""

import pytest
import torch

from rpg.reward import EntropyVariant, RewardCoefficients, entropy_regularization, residual_reward


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    shape = (4, 7)
    return (
        torch.randn(shape, generator=g, dtype=torch.float64),  # r_R
        -torch.rand(shape, generator=g, dtype=torch.float64) * 3,  # log πθ
        -torch.rand(shape, generator=g, dtype=torch.float64) * 3,  # log π_prior
    )


def test_kl_case_is_the_kl_penalized_rlhf_reward(batch):
    addon, policy_lp, prior_lp = batch
    beta = 0.37
    reward = residual_reward(addon, policy_lp, prior_lp, RewardCoefficients.kl(beta))
    # Ziegler et al. / paper eq. 10: r_R − β·(log πθ − log π_ref)
    torch.testing.assert_close(reward, addon - beta * (policy_lp - prior_lp), rtol=0, atol=1e-15)
    assert RewardCoefficients.kl(beta).is_kl
    assert RewardCoefficients.residual(beta, beta) == RewardCoefficients.kl(beta)


def test_greedy_ignores_the_prior(batch):
    addon, policy_lp, prior_lp = batch
    coefficients = RewardCoefficients.greedy(0.2)
    assert not coefficients.needs_prior
    with_prior = residual_reward(addon, policy_lp, prior_lp, coefficients)
    without_prior = residual_reward(addon, policy_lp, None, coefficients)
    torch.testing.assert_close(with_prior, without_prior, rtol=0, atol=0)
    torch.testing.assert_close(with_prior, addon - 0.2 * policy_lp, rtol=0, atol=0)


def test_soft_case_is_the_soft_policy_gradient_reward(batch):
    task_reward, policy_lp, _ = batch
    reward = residual_reward(task_reward, policy_lp, None, RewardCoefficients.soft(0.13472))
    torch.testing.assert_close(reward, task_reward - 0.13472 * policy_lp, rtol=0, atol=0)  # eq. 4-5


def test_residual_is_linear_in_both_coefficients(batch):
    addon, policy_lp, prior_lp = batch
    reward = residual_reward(addon, policy_lp, prior_lp, RewardCoefficients.residual(0.17, 0.05))
    torch.testing.assert_close(reward, addon + 0.17 * prior_lp - 0.05 * policy_lp, rtol=0, atol=1e-15)
    # Decoupled differs from KL at the same α̂ by exactly (ω' − α̂)·log π_prior.
    kl = residual_reward(addon, policy_lp, prior_lp, RewardCoefficients.kl(0.05))
    torch.testing.assert_close(reward - kl, (0.17 - 0.05) * prior_lp, rtol=0, atol=1e-14)


def test_reward_is_data_not_a_gradient_path(batch):
    addon, policy_lp, prior_lp = batch
    policy_lp = policy_lp.clone().requires_grad_(True)
    reward = residual_reward(addon, policy_lp, prior_lp, RewardCoefficients.residual(0.1, 0.2))
    assert not reward.requires_grad


def test_scalar_addon_broadcasts(batch):
    _, policy_lp, prior_lp = batch
    reward = residual_reward(1.5, policy_lp, prior_lp, RewardCoefficients.kl(0.1))
    assert reward.shape == policy_lp.shape


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_coefficients_fail_in_one_line(bad):
    with pytest.raises(ValueError, match="omega_prime must be a finite number >= 0"):
        RewardCoefficients(omega_prime=bad, alpha_hat=0.1)
    with pytest.raises(ValueError, match="alpha_hat must be"):
        RewardCoefficients(omega_prime=0.1, alpha_hat=bad)


def test_missing_prior_is_an_error_when_it_matters(batch):
    addon, policy_lp, _ = batch
    with pytest.raises(ValueError, match="prior_logprob is required"):
        residual_reward(addon, policy_lp, None, RewardCoefficients.kl(0.1))


def test_target_exponent():
    assert RewardCoefficients.residual(0.17, 0.13472).prior_weight_over_temperature() == pytest.approx(0.17 / 0.13472)
    with pytest.raises(ValueError):
        RewardCoefficients.greedy(0.0).prior_weight_over_temperature()


@pytest.mark.parametrize(
    "variant, in_reward, in_loss",
    [("none", 0.0, 0.0), ("end", 0.0, 0.3), ("repeat", 0.3, 0.3), ("soft", 0.3, 0.0)],
)
def test_entropy_variants_place_alpha_as_table_one_says(variant, in_reward, in_loss):
    regularization = entropy_regularization(variant, 0.3)
    assert regularization.reward_coefficients == RewardCoefficients.soft(in_reward)
    assert regularization.loss_entropy_coef == in_loss
    assert EntropyVariant.parse(variant).value == variant


def test_unknown_entropy_variant():
    with pytest.raises(ValueError, match="unknown entropy variant 'sof'; choose one of: none, end, repeat, soft"):
        entropy_regularization("sof", 0.1)
