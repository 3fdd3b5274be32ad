"""Closed-form maximum-entropy results on finite MDPs: the ground truth trainers are checked on.

A finite-horizon MDP here is a reward ``r[t, s, a]`` (or ``r[s, a]`` for every step), a
transition tensor ``P[s, a, s']`` and a horizon H. Deterministic dynamics may instead be given as
the next-state indices ``next[s, a]`` (an integer tensor): the same results with O(S·A) memory
instead of O(S²·A), which is what token MDPs with large vocabularies need. At temperature α the max-entropy optimal
policy (the optimum of eq. 3) follows soft value iteration:

    Q_t(s, a) = r_t(s, a) + γ·Σ_s' P(s'|s, a)·V_{t+1}(s'),   V_H = terminal values (0)
    V_t(s)    = α·log Σ_a exp(Q_t(s, a)/α)
    π_t(a|s)  = exp((Q_t(s, a) − V_t(s))/α)

and RPG's target (Sec. II and eq. 2) is the soft-optimal policy of the augmented reward
r_R + ω'·log π_prior at temperature α̂. If π_prior is soft-optimal for r at temperature α,
that target equals the soft-optimal policy of (ω'/α)·r + r_R at temperature α̂ (docs/theory.md §2),
because ω'·log π_prior = (ω'/α)(r + γ·E V(s') − V(s)) telescopes into a state-only shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "SoftSolution",
    "soft_value_iteration",
    "rpg_target",
    "soft_policy_evaluation",
    "state_distributions",
]


@dataclass
class SoftSolution:
    """Soft-optimal solution of a finite-horizon MDP."""

    log_policy: torch.Tensor  # [H, S, A]; −inf on disallowed actions
    q: torch.Tensor  # [H, S, A]
    v: torch.Tensor  # [H + 1, S]; v[H] are the terminal values

    @property
    def policy(self) -> torch.Tensor:
        return self.log_policy.exp()


def _per_step(reward: torch.Tensor, horizon: int) -> torch.Tensor:
    if reward.dim() == 2:
        return reward.unsqueeze(0).expand(horizon, *reward.shape)
    if reward.dim() != 3 or reward.shape[0] != horizon:
        raise ValueError(f"reward must be [S, A] or [H={horizon}, S, A], got {tuple(reward.shape)}")
    return reward


def _is_deterministic(transition: torch.Tensor) -> bool:
    return not torch.is_floating_point(transition)


def _check_transition(transition: torch.Tensor, num_states: int, num_actions: int) -> None:
    if _is_deterministic(transition):
        if transition.shape != (num_states, num_actions):
            expected = (num_states, num_actions)
            raise ValueError(f"next-state indices must be [S, A] = {expected}, got {tuple(transition.shape)}")
        if transition.numel() and (int(transition.min()) < 0 or int(transition.max()) >= num_states):
            low, high = int(transition.min()), int(transition.max())
            raise ValueError(f"next-state indices must lie in [0, {num_states}), got [{low}, {high}]")
        return
    if transition.shape != (num_states, num_actions, num_states):
        raise ValueError(
            f"transition must be [S, A, S] = {(num_states, num_actions, num_states)}, got {tuple(transition.shape)}"
        )


def _expected_next(transition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """E_{s'~P(·|s, a)} values[s'] as [S, A]: a gather for next-state indices, a contraction otherwise."""
    if _is_deterministic(transition):
        return values[transition]
    return torch.einsum("sap,p->sa", transition, values)


def soft_value_iteration(
    reward: torch.Tensor,
    transition: torch.Tensor,
    horizon: int,
    alpha: float,
    gamma: float = 1.0,
    terminal_values: torch.Tensor | None = None,
    action_mask: torch.Tensor | None = None,
) -> SoftSolution:
    """Exact max-entropy optimal policy of a finite-horizon MDP at temperature ``alpha``.

    Args:
        reward: [S, A] or [H, S, A].
        transition: [S, A, S] with rows summing to one, or [S, A] integer next-state indices.
        action_mask: optional [S, A] (or [H, S, A]) bool; False actions get probability 0.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    reward = _per_step(reward, horizon)
    _, num_states, num_actions = reward.shape
    _check_transition(transition, num_states, num_actions)
    v = torch.empty(horizon + 1, num_states, dtype=reward.dtype, device=reward.device)
    v[horizon] = 0.0 if terminal_values is None else terminal_values
    q = torch.empty_like(reward)
    mask = None if action_mask is None else _per_step(action_mask.bool(), horizon)
    for t in range(horizon - 1, -1, -1):
        q_t = reward[t] + gamma * _expected_next(transition, v[t + 1])
        if mask is not None:
            q_t = q_t.masked_fill(~mask[t], float("-inf"))
        q[t] = q_t
        v[t] = alpha * torch.logsumexp(q_t / alpha, dim=-1)
    log_policy = (q - v[:-1].unsqueeze(-1)) / alpha
    return SoftSolution(log_policy=log_policy, q=q, v=v)


def rpg_target(
    addon_reward: torch.Tensor,
    prior_log_policy: torch.Tensor,
    transition: torch.Tensor,
    horizon: int,
    omega_prime: float,
    alpha_hat: float,
    gamma: float = 1.0,
) -> SoftSolution:
    """The policy Residual PG converges to: soft-optimal for r_R + ω'·log π_prior at α̂ (eq. 2, 8).

    ``prior_log_policy`` is [H, S, A] (or [S, A]); actions the prior never takes (log-prob
    −inf) stay impossible when ω' > 0.
    """
    prior_log_policy = _per_step(prior_log_policy, horizon)
    allowed = torch.isfinite(prior_log_policy) if omega_prime > 0 else None
    augmented = _per_step(addon_reward, horizon) + omega_prime * torch.nan_to_num(prior_log_policy, neginf=0.0)
    return soft_value_iteration(augmented, transition, horizon, alpha_hat, gamma, action_mask=allowed)


def soft_policy_evaluation(
    log_policy: torch.Tensor,
    reward: torch.Tensor,
    transition: torch.Tensor,
    alpha: float,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Soft value V^π_t(s) of a (time-dependent) policy: the max-entropy objective of eq. 3.

        V_t(s) = Σ_a π_t(a|s)·[r_t(s, a) − α·log π_t(a|s) + γ·Σ_s' P(s'|s, a)·V_{t+1}(s')]

    Differentiable in ``log_policy``; returns [H + 1, S] with V_H = 0.
    """
    horizon = log_policy.shape[0]
    reward = _per_step(reward, horizon)
    _check_transition(transition, reward.shape[1], reward.shape[2])
    values = [torch.zeros(reward.shape[1], dtype=reward.dtype, device=reward.device)]
    for t in range(horizon - 1, -1, -1):
        policy = log_policy[t].exp()
        entropy_term = torch.where(policy > 0, policy * log_policy[t], torch.zeros_like(policy))
        continuation = gamma * _expected_next(transition, values[0])
        values.insert(0, (policy * (reward[t] + continuation)).sum(-1) - alpha * entropy_term.sum(-1))
    return torch.stack(values)


def state_distributions(log_policy: torch.Tensor, transition: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Marginal state distributions d_t(s) under a policy, [H + 1, S], from ``initial`` [S] (or [B, S])."""
    dists = [initial]
    for t in range(log_policy.shape[0]):
        joint = dists[-1].unsqueeze(-1) * log_policy[t].exp()  # [..., S, A]
        if _is_deterministic(transition):
            flat = joint.reshape(*joint.shape[:-2], -1)
            index = transition.reshape(-1).expand_as(flat)
            dists.append(torch.zeros_like(dists[-1]).scatter_add_(-1, index, flat))
        else:
            dists.append(torch.einsum("...sa,sap->...p", joint, transition))
    return torch.stack(dists)
