"""PPO's clipped objectives (Schulman et al. 2017), shared by the LLM and MuJoCo trainers.

Soft PPO (eq. 6) and Residual PPO (eq. 7) use the same clipped surrogate as PPO; only the
advantage changes (A^SPG / A^RPG, computed by GAE on the reward of :mod:`rpg.reward`).
Every function takes an optional mask so padded tokens drop out of the means.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rpg.advantage import masked_mean

__all__ = [
    "PolicyLossOutput",
    "clipped_policy_loss",
    "clipped_value_loss",
    "clipped_policy_loss_and_grad",
    "clipped_value_loss_and_grad",
]


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


def _mean_weights(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | float:
    """d masked_mean(x, mask) / dx: 1/n, or mask / (number of masked positions, at least 1)."""
    if mask is None:
        return 1.0 / x.numel()
    mask = mask.to(x.dtype)
    return mask / mask.sum().clamp_min(1.0)


def clipped_policy_loss_and_grad(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    mask: torch.Tensor | None = None,
) -> tuple[PolicyLossOutput, torch.Tensor]:
    """:func:`clipped_policy_loss` (eq. 6-7) and its gradient d loss / d logprobs, without autograd.

    With ρ = exp(log πθ − log π_old), d loss/dρ = −A where ρ ∈ [1 − ε, 1 + ε] (there the two
    branches are the same number; autograd's ``maximum`` gives each half and ``clamp`` passes its
    half on, so −A in total) or where the unclipped branch is the larger one; else 0. Then
    d/d log πθ = d/dρ · ρ, times the weight of each position in the mean.
    """
    with torch.no_grad():
        log_ratio = logprobs - old_logprobs
        ratio = torch.exp(log_ratio)
        negative_advantages = -advantages
        unclipped = negative_advantages * ratio
        clamped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
        clipped = negative_advantages * clamped
        loss = masked_mean(torch.maximum(unclipped, clipped), mask)
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        # ρ ∈ [1 − ε, 1 + ε] exactly where clamp leaves it unchanged (one comparison instead of three)
        carries = (unclipped > clipped) | (clamped == ratio)
        grad = (unclipped * carries) * _mean_weights(logprobs, mask)  # −A·ρ = d/dρ · ρ where it carries
    return PolicyLossOutput(loss, clip_fraction, approx_kl), grad


def clipped_value_loss_and_grad(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float | None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`clipped_value_loss` and its gradient d loss / d values, without autograd.

    d(V − R)²/dV = 2(V − R); the clipped branch's is 2(V_c − R) where V − V_old lies in [−ε, ε]
    (``clamp`` passes the gradient on its closed interval), else 0; ``maximum`` sends it to the
    larger branch and half to each on a tie, as autograd does.
    """
    with torch.no_grad():
        error = values - returns
        loss, grad = error**2, 2.0 * error
        if clip_range is not None:
            delta = values - old_values
            clipped_error = old_values + torch.clamp(delta, -clip_range, clip_range) - returns
            clipped_loss = clipped_error**2
            clipped_grad = (2.0 * clipped_error) * ((delta >= -clip_range) & (delta <= clip_range))
            tie = 0.5 * (grad + clipped_grad)
            grad = torch.where(loss > clipped_loss, grad, torch.where(loss < clipped_loss, clipped_grad, tie))
            loss = torch.maximum(loss, clipped_loss)
        value_loss = 0.5 * masked_mean(loss, mask)
        grad = grad * (0.5 * _mean_weights(values, mask))
    return value_loss, grad
