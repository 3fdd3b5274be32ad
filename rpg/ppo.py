"""PPO's clipped objectives (Schulman et al. 2017), shared by the LLM and MuJoCo trainers.

Soft PPO (eq. 6) and Residual PPO (eq. 7) use the same clipped surrogate as PPO; only the
advantage changes (A^SPG / A^RPG, computed by GAE on the reward of :mod:`rpg.reward`).
Every function takes an optional mask so padded tokens drop out of the means.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rpg.advantage import masked_mean

__all__ = ["PolicyLossOutput", "clipped_policy_loss", "clipped_value_loss"]


class PolicyLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar to minimize
    clip_fraction: torch.Tensor  # share of samples whose ratio was clipped (detached)
    approx_kl: torch.Tensor  # E[(r − 1) − log r], the k3 estimator of KL(old ‖ new) (detached)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    mask: torch.Tensor | None = None,
) -> PolicyLossOutput:
    """−min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) with ρ = πθ/π_old (eq. 6-7), averaged over ``mask``."""
    log_ratio = logprobs - old_logprobs.detach()
    ratio = torch.exp(log_ratio)
    advantages = advantages.detach()
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return PolicyLossOutput(loss, clip_fraction, approx_kl)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """½·max((V − R)², (clip(V, V_old ± ε) − R)²), averaged over ``mask``; plain ½(V − R)² if ε is None."""
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip_range is not None:
        old_values = old_values.detach()
        clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        loss = torch.maximum(loss, (clipped_values - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)
