"""Soft value iteration and the RPG target (docs/theory.md §2, paper Sec. II / III-C) on random small MDPs."""

import pytest
import torch

from rpg.maxent import rpg_target, soft_policy_evaluation, soft_value_iteration, state_distributions


def _random_mdp(seed, S=4, A=3, H=5):
    g = torch.Generator().manual_seed(seed)
    transition = torch.softmax(torch.randn(S, A, S, generator=g, dtype=torch.float64) * 2, dim=-1)
    basic = torch.randn(H, S, A, generator=g, dtype=torch.float64)
    addon = torch.randn(S, A, generator=g, dtype=torch.float64)
    return transition, basic, addon, H


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_soft_bellman_equation_holds(seed, gamma):
    transition, reward, _, H = _random_mdp(seed)
    alpha = 0.6
    sol = soft_value_iteration(reward, transition, H, alpha, gamma)
    for t in range(H):
        q = reward[t] + gamma * transition @ sol.v[t + 1]
        torch.testing.assert_close(sol.q[t], q, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sol.v[t], alpha * torch.logsumexp(q / alpha, -1), rtol=1e-12, atol=1e-12)
        # π = exp((Q − V)/α) is a distribution, and log π + V/α = Q/α (soft Bellman in policy form)
        torch.testing.assert_close(sol.policy[t].sum(-1), torch.ones(4, dtype=torch.float64))
        torch.testing.assert_close(alpha * sol.log_policy[t] + sol.v[t, :, None], q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_soft_optimal_policy_maximizes_the_max_entropy_objective(seed):
    transition, reward, _, H = _random_mdp(seed)
    alpha = 0.4
    sol = soft_value_iteration(reward, transition, H, alpha)
    # eq. 3: the soft value of π* under policy evaluation equals the soft-optimal V*, ...
    torch.testing.assert_close(
        soft_policy_evaluation(sol.log_policy, reward, transition, alpha), sol.v, rtol=1e-12, atol=1e-12
    )
    # ... and any other policy scores strictly lower in every initial state.
    g = torch.Generator().manual_seed(100 + seed)
    for _ in range(5):
        other = torch.log_softmax(
            sol.log_policy + 0.3 * torch.randn(sol.log_policy.shape, generator=g, dtype=torch.float64), -1
        )
        assert torch.all(soft_policy_evaluation(other, reward, transition, alpha)[0] < sol.v[0])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("omega_prime, alpha_hat", [(0.17, 0.13472), (0.05, 0.5), (1.0, 1.0), (0.0, 0.3)])
@pytest.mark.parametrize("gamma", [1.0, 0.95])
def test_rpg_target_is_the_soft_optimum_of_the_combined_reward(seed, omega_prime, alpha_hat, gamma):
    """π_prior soft-optimal for r at α ⇒ RPG(ω', α̂) targets the soft optimum of (ω'/α)·r + r_R at α̂."""
    transition, basic, addon, H = _random_mdp(seed)
    alpha = 0.7
    prior = soft_value_iteration(basic, transition, H, alpha, gamma)
    target = rpg_target(addon, prior.log_policy, transition, H, omega_prime, alpha_hat, gamma)
    combined = soft_value_iteration((omega_prime / alpha) * basic + addon, transition, H, alpha_hat, gamma)
    torch.testing.assert_close(target.log_policy, combined.log_policy, rtol=1e-10, atol=1e-10)


def test_kl_special_case_optimizes_r_plus_r_R_at_alpha():
    """eq. 11: with ω' = α̂ = α (KL-regularized RLHF) the target is the soft optimum of r + r_R at α."""
    transition, basic, addon, H = _random_mdp(7)
    alpha = 0.35
    prior = soft_value_iteration(basic, transition, H, alpha)
    target = rpg_target(addon, prior.log_policy, transition, H, alpha, alpha)
    torch.testing.assert_close(target.log_policy, soft_value_iteration(basic + addon, transition, H, alpha).log_policy)


def test_target_differs_from_the_prior_and_between_methods():
    transition, basic, addon, H = _random_mdp(8)
    prior = soft_value_iteration(basic, transition, H, 0.5)
    kl = rpg_target(addon, prior.log_policy, transition, H, 0.5, 0.5)
    residual = rpg_target(addon, prior.log_policy, transition, H, 0.1, 0.5)
    assert (kl.log_policy - prior.log_policy).abs().max() > 1e-2
    assert (kl.log_policy - residual.log_policy).abs().max() > 1e-2


def test_action_mask_and_prior_support():
    transition, basic, addon, H = _random_mdp(9)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[:, 0] = False
    prior = soft_value_iteration(basic, transition, H, 0.5, action_mask=mask)
    assert torch.all(prior.policy[:, :, 0] == 0)
    target = rpg_target(addon, prior.log_policy, transition, H, 0.2, 0.5)
    assert torch.all(target.policy[:, :, 0] == 0)  # what the prior never does stays impossible
    assert torch.isfinite(target.v).all()


def test_state_distributions_are_distributions():
    transition, basic, _, H = _random_mdp(10)
    sol = soft_value_iteration(basic, transition, H, 0.5)
    initial = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    dists = state_distributions(sol.log_policy, transition, initial)
    assert dists.shape == (H + 1, 4)
    torch.testing.assert_close(dists.sum(-1), torch.ones(H + 1, dtype=torch.float64))


def test_bad_shapes_and_temperature():
    transition, basic, _, H = _random_mdp(11)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        soft_value_iteration(basic, transition, H, 0.0)
    with pytest.raises(ValueError, match="transition must be"):
        soft_value_iteration(basic, transition[:, :, :2], H, 1.0)
    with pytest.raises(ValueError, match="reward must be"):
        soft_value_iteration(basic, transition, H + 1, 1.0)


@pytest.mark.parametrize("seed", range(3))
def test_next_state_indices_give_the_same_solution_as_the_one_hot_transition(seed):
    # Deterministic dynamics as [S, A] indices (O(S·A) memory) must equal the dense [S, A, S] one-hot form.
    g = torch.Generator().manual_seed(seed)
    S, A, H = 6, 4, 5
    next_state = torch.randint(S, (S, A), generator=g)
    dense = torch.nn.functional.one_hot(next_state, S).double()
    reward = torch.randn(H, S, A, generator=g, dtype=torch.float64)
    prior = soft_value_iteration(torch.randn(S, A, generator=g, dtype=torch.float64), dense, H, 0.7)
    a, b = soft_value_iteration(reward, next_state, H, 0.5), soft_value_iteration(reward, dense, H, 0.5)
    torch.testing.assert_close(a.log_policy, b.log_policy, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.v, b.v, rtol=0, atol=1e-12)
    ta = rpg_target(reward, prior.log_policy, next_state, H, 0.3, 0.4)
    tb = rpg_target(reward, prior.log_policy, dense, H, 0.3, 0.4)
    torch.testing.assert_close(ta.log_policy, tb.log_policy, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        soft_policy_evaluation(ta.log_policy, reward, next_state, 0.4),
        soft_policy_evaluation(ta.log_policy, reward, dense, 0.4),
        rtol=0,
        atol=1e-12,
    )
    initial = torch.softmax(torch.randn(2, S, generator=g, dtype=torch.float64), -1)  # a batch of initial laws
    torch.testing.assert_close(
        state_distributions(ta.log_policy, next_state, initial),
        state_distributions(ta.log_policy, dense, initial),
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="next-state indices"):
        soft_value_iteration(reward, next_state + S, H, 0.5)
