"""The reparameterized reward of Residual Policy Gradient.

Every trainer in this project optimizes a policy πθ on

    r_RPG(s, a) = r_R(s, a) + ω'·log π_prior(a|s) − α̂·log πθ(a|s)        (paper eq. 8)

which is soft (max-entropy) policy gradient (eq. 4-6) applied to the augmented MDP
M_aug = (S, A, r_R + ω'·log π_prior, p) of Residual Q-Learning (eq. 2). Named special cases:

* soft:     ω' = 0, r_R = the task reward r, α̂ = α      (Soft PPO, eq. 5-6)
* greedy:   ω' = 0                                        (customize on the add-on reward only)
* kl:       ω' = α̂ = β    → r_R − β(log πθ − log π_ref)   (classic RLHF, eq. 10 / eq. 19)
* residual: any ω', α̂                                     (the decoupled form, eq. 8)

The functions are pure tensor maths: they broadcast over any batch shape, so the same code
serves per-token rewards of a language model and per-step rewards of a vectorized env.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

__all__ = [
    "RewardCoefficients",
    "residual_reward",
    "EntropyVariant",
    "EntropyRegularization",
    "entropy_regularization",
]


def _check_coefficient(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class RewardCoefficients:
    """(ω', α̂) of eq. 8: the weight of log π_prior and of −log πθ in the reward.

    ``omega_prime`` (ω') pulls the policy toward the prior; ``alpha_hat`` (α̂) is the entropy
    temperature of the customized policy. Both are validated to be finite and >= 0.
    """

    omega_prime: float
    alpha_hat: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "omega_prime", _check_coefficient("omega_prime", self.omega_prime))
        object.__setattr__(self, "alpha_hat", _check_coefficient("alpha_hat", self.alpha_hat))

    @classmethod
    def soft(cls, alpha: float) -> "RewardCoefficients":
        """Soft policy gradient on the task reward (eq. 4): ω' = 0, α̂ = α."""
        return cls(omega_prime=0.0, alpha_hat=alpha)

    @classmethod
    def greedy(cls, alpha_hat: float) -> "RewardCoefficients":
        """Greedy customization: the add-on reward alone, ω' = 0."""
        return cls(omega_prime=0.0, alpha_hat=alpha_hat)

    @classmethod
    def kl(cls, beta: float) -> "RewardCoefficients":
        """KL-regularized RLHF (eq. 10): ω' = α̂ = β."""
        return cls(omega_prime=beta, alpha_hat=beta)

    @classmethod
    def residual(cls, omega_prime: float, alpha_hat: float) -> "RewardCoefficients":
        """Residual policy gradient (eq. 8) with decoupled ω' and α̂."""
        return cls(omega_prime=omega_prime, alpha_hat=alpha_hat)

    @property
    def is_kl(self) -> bool:
        """True when the reward is the classic KL-penalized one (ω' = α̂)."""
        return self.omega_prime == self.alpha_hat

    @property
    def needs_prior(self) -> bool:
        """Whether log π_prior enters the reward at all (ω' ≠ 0)."""
        return self.omega_prime != 0.0

    def prior_weight_over_temperature(self) -> float:
        """ω'/α̂: the exponent of π_prior in the sequence-level target π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂)."""
        if self.alpha_hat == 0:
            raise ValueError("the target distribution needs alpha_hat > 0")
        return self.omega_prime / self.alpha_hat


def residual_reward(
    addon_reward: torch.Tensor | float,
    policy_logprob: torch.Tensor,
    prior_logprob: torch.Tensor | None,
    coefficients: RewardCoefficients,
) -> torch.Tensor:
    """r_R + ω'·log π_prior − α̂·log πθ (paper eq. 8), elementwise.

    Args:
        addon_reward: r_R per step (a tensor broadcastable to ``policy_logprob``, or a scalar).
            For Soft PPO pass the task reward r here with ``RewardCoefficients.soft(α)``.
        policy_logprob: log πθ(a|s) of the sampled actions, *the sampling distribution's*
            log-probability (detached: the reward is data, not a gradient path).
        prior_logprob: log π_prior(a|s) of the same actions; may be ``None`` when ω' = 0.
        coefficients: (ω', α̂).

    Returns the per-step reward with the broadcast shape of the inputs.
    """
    policy_logprob = policy_logprob.detach()
    reward = torch.as_tensor(addon_reward, dtype=policy_logprob.dtype, device=policy_logprob.device)
    reward = reward - coefficients.alpha_hat * policy_logprob
    if coefficients.omega_prime != 0.0:
        if prior_logprob is None:
            raise ValueError("prior_logprob is required when omega_prime != 0")
        reward = reward + coefficients.omega_prime * prior_logprob.detach().to(policy_logprob.dtype)
    return reward


class EntropyVariant(str, enum.Enum):
    """How an entropy bonus with coefficient α enters PPO (paper Sec. III-A, Table I)."""

    NONE = "none"  # No-Entropy PPO: advantage on r, no entropy term.
    END = "end"  # End-Entropy PPO: advantage on r, loss − α·H (the usual entropy coefficient).
    REPEAT = "repeat"  # Repeat-Entropy PPO [6, eq. 80]: advantage on r − α·log πθ and − α·H.
    SOFT = "soft"  # Soft PPO (eq. 5-6): advantage on r − α·log πθ, no entropy term in the loss.

    @classmethod
    def parse(cls, value: "str | EntropyVariant") -> "EntropyVariant":
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(v.value for v in cls)
            raise ValueError(f"unknown entropy variant {value!r}; choose one of: {names}") from None


@dataclass(frozen=True)
class EntropyRegularization:
    """Where α goes for an entropy variant.

    ``reward_coefficients.alpha_hat`` multiplies −log πθ inside the reward (so inside the
    return and the advantage); ``loss_entropy_coef`` multiplies −H(πθ(·|s)) in the PPO loss.
    """

    reward_coefficients: RewardCoefficients
    loss_entropy_coef: float


def entropy_regularization(variant: "str | EntropyVariant", alpha: float) -> EntropyRegularization:
    """Map an entropy variant of Table I and its α to reward and loss coefficients."""
    variant = EntropyVariant.parse(variant)
    alpha = _check_coefficient("alpha", alpha)
    in_reward = alpha if variant in (EntropyVariant.SOFT, EntropyVariant.REPEAT) else 0.0
    in_loss = alpha if variant in (EntropyVariant.END, EntropyVariant.REPEAT) else 0.0
    return EntropyRegularization(RewardCoefficients.soft(in_reward), in_loss)
