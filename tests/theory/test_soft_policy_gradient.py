"""The soft policy gradient estimator (eq. 4/5) is unbiased for the max-entropy objective (eq. 3).

Exact enumeration of every trajectory of a tiny problem gives the *expectation* of each
estimator; autograd of the exact objective gives the true gradient. Soft PG matches it to
float precision; End-Entropy and Repeat-Entropy PG do not (Sec. III-A).
"""

import itertools

import pytest
import torch

from rpg.maxent import soft_policy_evaluation
from rpg.reward import entropy_regularization, residual_reward

ALPHA = 0.3


def _problem(kind):
    g = torch.Generator().manual_seed(0 if kind == "bandit" else 1)
    if kind == "bandit":
        S, A, H = 1, 4, 1
    else:  # two steps, stochastic transitions, several initial states
        S, A, H = 3, 2, 2
    transition = torch.softmax(2 * torch.randn(S, A, S, generator=g, dtype=torch.float64), -1)
    reward = torch.randn(H, S, A, generator=g, dtype=torch.float64)
    initial = torch.softmax(torch.randn(S, generator=g, dtype=torch.float64), -1)
    logits = torch.randn(H, S, A, generator=g, dtype=torch.float64)
    return transition, reward, initial, logits


def _true_gradient(transition, reward, initial, logits):
    theta = logits.clone().requires_grad_(True)
    values = soft_policy_evaluation(torch.log_softmax(theta, -1), reward, transition, ALPHA)
    (initial @ values[0]).backward()  # J(πθ) of eq. 3
    return theta.grad


def _expected_estimator(variant, transition, reward, initial, logits):
    """E_τ[Σ_t ∇log π(a_t|s_t)·Σ_{t'≥t} r'_t' + c_H·Σ_t ∇H(π(·|s_t))] by enumerating every τ."""
    regularization = entropy_regularization(variant, ALPHA)
    theta = logits.clone().requires_grad_(True)
    log_pi = torch.log_softmax(theta, -1)
    H, S, A = logits.shape
    surrogate = torch.zeros((), dtype=torch.float64)
    for states in itertools.product(range(S), repeat=H):
        for actions in itertools.product(range(A), repeat=H):
            prob = initial[states[0]].clone()
            for t in range(H):
                prob = prob * log_pi[t, states[t], actions[t]].exp()
                if t + 1 < H:
                    prob = prob * transition[states[t], actions[t], states[t + 1]]
            prob = prob.detach()
            if prob == 0:
                continue
            step_logp = torch.stack([log_pi[t, states[t], actions[t]] for t in range(H)])
            step_reward = torch.stack([reward[t, states[t], actions[t]] for t in range(H)])
            # The reward each variant puts inside the return (r − α̂·log πθ), from rpg.reward.
            rewards = residual_reward(step_reward, step_logp, None, regularization.reward_coefficients)
            reward_to_go = rewards.flip(0).cumsum(0).flip(0)  # Σ_{t'≥t}, γ = 1 (finite horizon)
            entropy = torch.stack([-(log_pi[t, states[t]].exp() * log_pi[t, states[t]]).sum() for t in range(H)])
            surrogate = surrogate + prob * (
                (step_logp * reward_to_go).sum() + regularization.loss_entropy_coef * entropy.sum()
            )
    surrogate.backward()
    return theta.grad


@pytest.mark.parametrize("kind", ["bandit", "two_step"])
def test_soft_policy_gradient_is_unbiased(kind):
    problem = _problem(kind)
    torch.testing.assert_close(_expected_estimator("soft", *problem), _true_gradient(*problem), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["bandit", "two_step"])
def test_repeat_entropy_counts_the_first_step_entropy_twice(kind):
    problem = _problem(kind)
    true = _true_gradient(*problem)
    repeat = _expected_estimator("repeat", *problem)
    assert (repeat - true).abs().max() > 1e-3
    # The bias is exactly the extra α·E[Σ_t ∇H(π(·|s_t))]: Repeat = Soft + End's entropy term.
    end_entropy_only = _expected_estimator("end", *problem) - _expected_estimator("none", *problem)
    torch.testing.assert_close(repeat - true, end_entropy_only, rtol=1e-10, atol=1e-12)


def test_end_entropy_misses_future_entropy_on_a_multi_step_problem():
    problem = _problem("two_step")
    assert (_expected_estimator("end", *problem) - _true_gradient(*problem)).abs().max() > 1e-3


def test_end_entropy_is_exact_only_in_the_one_step_case():
    # With a single step, the first-step entropy is the whole entropy bonus, so End-Entropy's
    # estimator is unbiased there; the paper's objection (Sec. III-A) is about later steps.
    problem = _problem("bandit")
    torch.testing.assert_close(_expected_estimator("end", *problem), _true_gradient(*problem), rtol=1e-10, atol=1e-12)


def test_no_entropy_estimator_ignores_the_entropy_bonus():
    problem = _problem("two_step")
    assert (_expected_estimator("none", *problem) - _true_gradient(*problem)).abs().max() > 1e-3
