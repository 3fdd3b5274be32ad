"""Preference losses from the reward view of RPG (paper App. B, eq. 21-25).

All inputs are sequence log-probabilities ``log π(y|x)`` summed over completion tokens, one
entry per preference pair: ``policy_*`` from πθ, ``reference_*`` from the prior/reference π.
Each loss returns per-pair losses (reduce them as you like) and the implicit rewards of the
chosen and rejected completions, so trainers can log reward accuracy and margins.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rpg.reward import _check_coefficient

__all__ = [
    "PreferenceLossOutput",
    "dpo_loss",
    "decoupled_dpo_loss",
    "implicit_reward_cross_entropy_loss",
]


class PreferenceLossOutput(NamedTuple):
    losses: torch.Tensor  # per pair
    chosen_rewards: torch.Tensor  # implicit reward of y_w (detached)
    rejected_rewards: torch.Tensor  # implicit reward of y_l (detached)


def _smoothed_logsigmoid_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    # Conservative DPO: with probability ε the label is flipped (ε = 0 is the plain loss).
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def decoupled_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    alpha_hat: float,
    omega_prime: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """Decoupled DPO (eq. 25): −log σ(α̂·log πθ(yw)/πθ(yl) − ω'·log π(yw)/π(yl)).

    The implicit reward of a completion is r_R(y) = α̂·log πθ(y) − ω'·log π(y) (eq. 23 with the
    decoupled reparameterization of eq. 8), whose optimum is πθ ∝ π^(ω'/α̂)·exp(r_R/α̂).
    With α̂ = ω' = β this is exactly DPO (eq. 22).
    """
    alpha_hat = _check_coefficient("alpha_hat", alpha_hat)
    omega_prime = _check_coefficient("omega_prime", omega_prime)
    if alpha_hat == 0:
        raise ValueError("alpha_hat must be > 0 for decoupled DPO")
    chosen = alpha_hat * policy_chosen_logps - omega_prime * reference_chosen_logps
    rejected = alpha_hat * policy_rejected_logps - omega_prime * reference_rejected_logps
    losses = _smoothed_logsigmoid_loss(chosen - rejected, label_smoothing)
    return PreferenceLossOutput(losses, chosen.detach(), rejected.detach())


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """DPO (eq. 22): −log σ(β[log πθ(yw)/π(yw) − log πθ(yl)/π(yl)]).

    The special case α̂ = ω' = β of :func:`decoupled_dpo_loss` (the reward view of eq. 23).
    """
    return decoupled_dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        alpha_hat=beta,
        omega_prime=beta,
        label_smoothing=label_smoothing,
    )


def implicit_reward_cross_entropy_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    labels: torch.Tensor | float = 1.0,
) -> PreferenceLossOutput:
    """Implicit-reward cross-entropy (eq. 24), one label l ∈ [0, 1] per pair:

        −[ l·log σ(β·log πθ(yw)/π(yw)) + (1 − l)·log(1 − σ(β·log πθ(yl)/π(yl))) ]

    Unlike DPO's Bradley–Terry loss, each implicit reward r(y) = β·log πθ(y)/π(y) is
    classified on its own (the Implicit PRM form the paper cites as more data-efficient).
    l = 1 (the default) labels the chosen completion as good.
    """
    beta = _check_coefficient("beta", beta)
    if beta == 0:
        raise ValueError("beta must be > 0 for the cross-entropy preference loss")
    labels = torch.as_tensor(labels, dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)
    if torch.any((labels < 0) | (labels > 1)):
        raise ValueError("preference labels must lie in [0, 1]")
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    # log(1 − σ(x)) = log σ(−x), written so for numerical stability.
    losses = -(labels * F.logsigmoid(chosen) + (1.0 - labels) * F.logsigmoid(-rejected))
    return PreferenceLossOutput(losses, chosen.detach(), rejected.detach())
