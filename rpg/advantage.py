"""Generalized advantage estimation and whitening, shared by both domains.

One recursion (:func:`generalized_advantage_estimation`) written time-major, with the two
ways an episode can end kept apart:

* termination — the state is terminal, nothing follows: no bootstrap (δ = r − V);
* episode end without termination (a time-limit truncation, or the last step of a rollout
  that is cut) — the return continues past the cut, so we bootstrap from the value of the
  true next state, but the advantage recursion stops there.

:func:`env_gae` is the form for vectorized environments and :func:`masked_gae` the form for
padded token sequences; both call the one recursion. Advantages estimate the advantage on
whatever reward they are given — for RPG the reparameterized reward of eq. 8, giving the
A^RPG of eq. 7 (A^SPG of eq. 5 for Soft PPO).

Beside GAE, the critic-free estimators for k completions per prompt (:func:`leave_one_out_advantages`,
RLOO; :func:`group_normalized_advantages`, GRPO) work on the sequence return of eq. 8,
R = r_R + Σ_t [ω'·log π_prior(y_t) − α̂·log πθ(y_t)], with the other completions of the same prompt as baseline.
"""

from __future__ import annotations

import torch

__all__ = [
    "generalized_advantage_estimation",
    "env_gae",
    "masked_gae",
    "masked_mean",
    "masked_var",
    "whiten",
    "leave_one_out_advantages",
    "group_normalized_advantages",
    "GROUP_SCALINGS",
]


def generalized_advantage_estimation(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(γ, λ) over a time-major batch (time is dim 0, any batch dims after).

        δ_t = r_t + γ·(1 − terminated_t)·V(s_{t+1}) − V(s_t)
        A_t = δ_t + γλ·(1 − episode_end_t)·A_{t+1}

    Args:
        rewards, values: [T, ...]; ``values[t] = V(s_t)``.
        next_values: [T, ...]; V of the true successor of step t (for a truncated step, the
            value of the final observation, not of the reset observation that follows).
        terminated: [T, ...] bool; the successor is terminal (no bootstrap).
        episode_end: [T, ...] bool; the trajectory stops after step t (terminated, truncated,
            or the end of a sequence). Must include every terminated step.

    Returns ``(advantages, returns)`` where ``returns = advantages + values`` (the λ-return
    targets of the value function).
    """
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape == episode_end.shape):
        raise ValueError(
            "rewards, values, next_values, terminated and episode_end must share one shape, got "
            f"{[tuple(t.shape) for t in (rewards, values, next_values, terminated, episode_end)]}"
        )
    continuing = 1.0 - terminated.to(values.dtype)
    carries = 1.0 - episode_end.to(values.dtype)
    deltas = rewards + gamma * continuing * next_values - values
    advantages = torch.empty_like(values)
    running = torch.zeros_like(values[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * carries[t] * running
        advantages[t] = running
    return advantages, advantages + values


def env_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    last_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
    final_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE for a rollout of vectorized environments, [T, num_envs].

    Args:
        values: V(obs_t) for each step of the rollout.
        last_values: [num_envs] V of the observation after the last step (bootstraps the
            cut at the end of the rollout).
        terminated / truncated: gymnasium's flags of each step.
        final_values: [T, num_envs] V(final observation) of each step; read only where
            ``truncated & ~terminated`` (there the env auto-reset, so ``values[t + 1]`` is
            the value of a new episode's first observation, not of the successor).
            ``None`` if the caller already folded γ·V(final) into the reward.
    """
    terminated = terminated.bool()
    truncated = truncated.bool()
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)], dim=0)
    cut = truncated & ~terminated
    if final_values is not None:
        next_values = torch.where(cut, final_values, next_values)
    else:
        # The bootstrap already sits in the reward: do not add the reset state's value.
        next_values = torch.where(cut, torch.zeros_like(next_values), next_values)
    return generalized_advantage_estimation(
        rewards, values, next_values, terminated, terminated | truncated, gamma, lam
    )


def masked_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE for padded token sequences, [batch, seq] with ``mask`` 1 on real tokens.

    Each row's real tokens form one contiguous episode (left or right padding) that
    terminates at its last real token. Padded positions get advantage and return 0.
    """
    mask = mask.bool()
    if rewards.shape != values.shape or rewards.shape != mask.shape:
        raise ValueError("rewards, values and mask must share one [batch, seq] shape")
    r, v, m = rewards.T, values.T, mask.T  # time-major
    next_mask = torch.cat([m[1:], torch.zeros_like(m[:1])], dim=0)
    next_values = torch.cat([v[1:], torch.zeros_like(v[:1])], dim=0) * next_mask
    last_real = m & ~next_mask
    advantages, returns = generalized_advantage_estimation(
        r * m, v * m, next_values, last_real, last_real | ~m, gamma, lam
    )
    return advantages.T * mask, returns.T * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, dim=None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is true (all positions if ``mask`` is None)."""
    if mask is None:
        return x.mean() if dim is None else x.mean(dim)
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over masked positions (Bessel-corrected by default)."""
    if mask is None:
        return x.var(unbiased=unbiased) if x.numel() > 1 else torch.zeros((), dtype=x.dtype)
    count = mask.to(x.dtype).sum()
    centered = (x - masked_mean(x, mask)) * mask.to(x.dtype)
    var = (centered**2).sum() / count.clamp_min(1.0)
    if unbiased and count > 1:
        var = var * count / (count - 1)
    return var


def whiten(
    x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalize ``x`` to unit variance (and zero mean if ``shift_mean``) over masked positions.

    Masked-out positions are returned as 0 so they cannot leak into a loss.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out if mask is None else out * mask.to(x.dtype)


GROUP_SCALINGS = ("group", "batch", "none")


def _groups(returns: torch.Tensor, num_generations: int) -> torch.Tensor:
    """[N] sequence returns, k consecutive rows per prompt, as [N / k, k]."""
    if returns.dim() != 1:
        raise ValueError(f"returns must be a 1-D tensor of sequence returns, got shape {tuple(returns.shape)}")
    if num_generations < 2:
        raise ValueError(f"num_generations must be >= 2 for a group baseline, got {num_generations}")
    if returns.numel() % num_generations != 0:
        raise ValueError(f"{returns.numel()} returns do not split into groups of num_generations={num_generations}")
    return returns.view(-1, num_generations)


def leave_one_out_advantages(returns: torch.Tensor, num_generations: int) -> torch.Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): A_i = R_i − mean of the group's other k − 1 returns.

    ``returns`` holds the sequence return of eq. 8 of each completion, the k completions of one prompt in
    consecutive rows. The baseline excludes R_i, so it is independent of y_i and E[A_i·∇log πθ(y_i)] is
    the unbiased policy gradient of E[R] (the entropy-regularized objective whose optimum is the exact
    target π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂)). Equivalently A_i = k/(k − 1)·(R_i − group mean).
    """
    grouped = _groups(returns, num_generations)
    others = (grouped.sum(-1, keepdim=True) - grouped) / (num_generations - 1)
    return (grouped - others).reshape(-1)


def group_normalized_advantages(
    returns: torch.Tensor, num_generations: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """GRPO (Shao et al. 2024): A_i = (R_i − group mean) / (std + eps), TRL's ``scale_rewards`` switch.

    ``scale``: "group" divides by the Bessel-corrected std of the prompt's k returns (GRPO), "batch" by the
    std of all returns given (one scale for the batch), "none" does not divide (Dr. GRPO; then A_i equals
    (k − 1)/k times the leave-one-out advantage). Dividing by a per-prompt std weighs each prompt's
    gradient by 1/std(R | x): prompts whose completions already agree get pushed as hard as any other.
    With eq. 8's return the std is 0 exactly at the target π* (there R(x, y) = α̂·log Z(x) for every y),
    so near π* "group" scaling keeps the update at unit size instead of letting it vanish.
    """
    if scale not in GROUP_SCALINGS:
        raise ValueError(f"scale must be one of {GROUP_SCALINGS}, got {scale!r}")
    grouped = _groups(returns, num_generations)
    centered = grouped - grouped.mean(-1, keepdim=True)
    if scale == "group":
        centered = centered / (grouped.std(-1, keepdim=True) + eps)
    elif scale == "batch":
        centered = centered / (returns.std() + eps)
    return centered.reshape(-1)
