"""Configuration of :class:`~rpg_llm.dpo.trainer.DecoupledDPOTrainer`: TRL's ``DPOConfig`` plus (α̂, ω').

Two loss types join TRL's own list and mix with them through ``loss_type`` / ``loss_weights``:

- ``decoupled``: decoupled DPO (paper eq. 25), −log σ(α̂·log πθ(yw)/πθ(yl) − ω'·log π(yw)/π(yl)).
  Its optimum is πθ ∝ π^(ω'/α̂)·exp(r_R/α̂); with α̂ = ω' = β it is TRL's ``sigmoid`` loss.
- ``ce``: the implicit-reward cross-entropy (eq. 24) with β = ``beta`` and a per-pair label
  l ∈ [0, 1] read from the dataset column ``label_column`` (1, "the chosen side is good", when absent).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from trl import DPOConfig

from rpg_llm.precision import bf16_supported_on_device

__all__ = ["RPG_LOSS_TYPES", "DecoupledDPOConfig"]

# Loss types this package adds to TRL's; everything else in `loss_type` is TRL's business.
RPG_LOSS_TYPES = ("decoupled", "ce")
# TRL's own loss types, read from its DPOConfig help text so the list follows the installed TRL
# (TRL itself only rejects an unknown type inside the first training step).
TRL_LOSS_TYPES = tuple(re.findall(r"`'(\w+)'`", DPOConfig.__dataclass_fields__["loss_type"].metadata.get("help", "")))


@dataclass
class DecoupledDPOConfig(DPOConfig):
    r"""TRL's ``DPOConfig`` with the decoupled coefficients of the reward view of DPO (paper App. B).

    Parameters (in addition to every ``DPOConfig`` field):
        alpha_hat (`float`, *optional*):
            α̂ of eq. 25, the temperature on log πθ. Defaults to ``beta``. Must be > 0.
        omega_prime (`float`, *optional*):
            ω' of eq. 25, the weight of log π_ref. Defaults to ``beta``. Must be >= 0.
        label_column (`str`, *optional*, defaults to ``"label"``):
            Dataset column holding the per-pair label l ∈ [0, 1] of the ``ce`` loss (eq. 24). Read (and
            checked) only when ``loss_type`` includes ``ce``; other losses leave such a column alone, as TRL does.
        completion_eos (`bool`, *optional*, defaults to ``True``):
            Whether completions end with EOS (TRL's behaviour). ``False`` for fixed-length completions.
        bf16 (`bool`, *optional*):
            Unset means "from the device": on when the accelerator supports bf16, off on CPU.
    """

    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={
            "help": "Loss type(s). TRL's ('sigmoid', 'hinge', 'ipo', ...) plus 'decoupled' (decoupled DPO, paper "
            "eq. 25, with alpha_hat / omega_prime) and 'ce' (implicit-reward cross-entropy, eq. 24, with beta and a "
            "per-pair 'label' column). Several are summed with the weights in `loss_weights`."
        },
    )
    alpha_hat: float | None = field(
        default=None,
        metadata={"help": "α̂ of decoupled DPO (eq. 25): temperature on log πθ. Defaults to `beta`. Must be > 0."},
    )
    omega_prime: float | None = field(
        default=None,
        metadata={"help": "ω' of decoupled DPO (eq. 25): weight of log π_ref. Defaults to `beta`. Must be >= 0."},
    )
    label_column: str = field(
        default="label",
        metadata={"help": "Dataset column with the per-pair label l in [0, 1] of the 'ce' loss (default l = 1)."},
    )
    completion_eos: bool = field(
        default=True,
        metadata={
            "help": "End every completion with EOS, as TRL does. Turn off for fixed-length completions (e.g. the toy "
            "world), where ending is not the policy's choice and log π(EOS) would only add noise to the "
            "implicit reward."
        },
    )

    def __post_init__(self):
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) is None or getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        if not self.loss_type:
            raise ValueError("loss_type must name at least one loss")
        unknown = [name for name in self.loss_type if name not in RPG_LOSS_TYPES + TRL_LOSS_TYPES]
        if unknown and TRL_LOSS_TYPES:
            raise ValueError(f"unknown loss_type {unknown}; choose from {list(RPG_LOSS_TYPES + TRL_LOSS_TYPES)}")
        if self.bf16 is None:
            self.bf16 = bf16_supported_on_device(self.use_cpu) and not self.fp16
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}")
        self.alpha_hat = self.beta if self.alpha_hat is None else float(self.alpha_hat)
        self.omega_prime = self.beta if self.omega_prime is None else float(self.omega_prime)
        if not (math.isfinite(self.alpha_hat) and self.alpha_hat > 0):
            raise ValueError(f"alpha_hat must be a finite number > 0, got {self.alpha_hat!r}")
        if not (math.isfinite(self.omega_prime) and self.omega_prime >= 0):
            raise ValueError(f"omega_prime must be a finite number >= 0, got {self.omega_prime!r}")
        rpg_losses = sorted(set(self.loss_type) & set(RPG_LOSS_TYPES))
        if rpg_losses:
            # These TRL options reshape TRL's own log-ratios; eq. 24/25 are defined on plain sequence log-probs.
            if self.ld_alpha is not None:
                raise ValueError(f"ld_alpha is not supported with loss_type {rpg_losses}; unset it")
            if self.f_divergence_type != "reverse_kl":
                raise ValueError(f"f_divergence_type={self.f_divergence_type!r} is not supported with {rpg_losses}")
            if self.use_weighting:
                raise ValueError(f"use_weighting (WPO) is not supported with loss_type {rpg_losses}")
        super().__post_init__()
