"""Configuration of Residual PPO for causal LMs, in TRL's conventions (a TrainingArguments dataclass).

Field names follow TRL's last PPOConfig (``num_ppo_epochs``, ``num_mini_batches``, ``cliprange``,
``vf_coef``, ``response_length``, ``total_episodes``, ``reward_model_path`` …) so TRL users find
their way; the RPG part is ``omega_prime`` (ω') and ``alpha_hat`` (α̂) of eq. 8, with ``kl_coef``
as the classic-RLHF shorthand that sets both (ω' = α̂ = β, eq. 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from rpg.advantage import GROUP_SCALINGS
from rpg.reward import RewardCoefficients
from rpg_llm.precision import bf16_supported_on_device

__all__ = ["ResidualPPOConfig", "ADVANTAGE_ESTIMATORS"]

ADVANTAGE_ESTIMATORS = ("gae", "rloo", "grpo")  # OpenRLHF's name for the switch


@dataclass
class ResidualPPOConfig(TrainingArguments):
    """PPO on the per-token reward r_R + ω'·log π_ref − α̂·log πθ (paper eq. 8).

    Batch sizes (per process) count completions, as TRL's RLOO / GRPO do: one rollout holds
    ``per_device_train_batch_size × gradient_accumulation_steps × num_mini_batches`` completions,
    ``num_generations`` for each of its prompts; each of the ``num_ppo_epochs``
    passes splits it into ``num_mini_batches`` optimizer steps of ``gradient_accumulation_steps``
    micro-batches. (TRL 1.12's PPOConfig rolled out ``per_device × accumulation`` prompts and split
    those into mini-batches; here accumulation always means micro-batches per optimizer step.)
    """

    # --- RPG coefficients (eq. 8)
    omega_prime: float = field(default=0.05, metadata={"help": "ω': weight of log π_ref in the per-token reward"})
    alpha_hat: float = field(default=0.05, metadata={"help": "α̂: weight of −log πθ (entropy temperature of the result)"})
    kl_coef: float | None = field(
        default=None, metadata={"help": "β shorthand for classic KL-penalized RLHF: sets omega_prime = alpha_hat = β"}
    )
    # --- rollout
    response_length: int = field(default=53, metadata={"help": "tokens sampled per completion"})
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature; fixed to 1 (log πθ in the reward must be the sampling law)"}
    )
    total_episodes: int | None = field(
        default=None,
        metadata={"help": "completions to roll out in total (all processes); default: num_generations per prompt"},
    )
    local_rollout_forward_batch_size: int = field(
        default=64, metadata={"help": "rows per no-grad forward when scoring a rollout"}
    )
    max_prompt_length: int | None = field(default=None, metadata={"help": "truncate prompts (from the left) to this many tokens"})
    # --- PPO
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout"})
    num_mini_batches: int = field(default=1, metadata={"help": "optimizer steps per pass"})
    cliprange: float = field(default=0.2, metadata={"help": "PPO ratio clip ε"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout's values"})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss"})
    gamma: float = field(default=1.0, metadata={"help": "discount over completion tokens"})
    lam: float = field(default=0.95, metadata={"help": "GAE λ"})
    whiten_rewards: bool = field(default=False, metadata={"help": "whiten per-token rewards before GAE"})
    whiten_advantages: bool | None = field(
        default=None,
        metadata={"help": "whiten advantages over each rollout; default: on for gae, off for rloo/grpo (as TRL)"},
    )
    # --- critic-free estimators (docs/llm_critic_free.md)
    advantage_estimator: str = field(
        default="gae",
        metadata={"help": "gae: PPO with a critic; critic-free: rloo (leave-one-out baseline), grpo (group mean, std)"},
    )
    num_generations: int | None = field(
        default=None,
        metadata={"help": "completions per prompt (TRL's name); default 1 for gae, 2 for rloo, 8 for grpo (as TRL)"},
    )
    scale_rewards: str = field(
        default="group",
        metadata={"help": "grpo: divide by the std of the prompt group (group), of the rollout (batch), or not (none)"},
    )
    suppress_token_ids: list[int] | None = field(
        default=None,
        metadata={"help": "token ids never sampled: their logits are set to the lowest value before every "
                          "softmax (sampling, policy and reference log-probs), so πθ and π_ref are "
                          "renormalized over the rest"},
    )
    # --- models and reward source
    ref_model_path: str | None = field(default=None, metadata={"help": "reference π_ref (default: the policy's start; with LoRA: adapters off)"})
    value_model_path: str | None = field(default=None, metadata={"help": "critic backbone (default: the policy's path)"})
    reward_model_path: str | None = field(default=None, metadata={"help": "AutoModelForSequenceClassification giving r_R"})
    reward_funcs: list[str] | None = field(
        default=None, metadata={"help": "r_R as Python functions 'module:function' with TRL's reward-function signature"}
    )
    reward_weights: list[float] | None = field(default=None, metadata={"help": "weights of reward_funcs (default 1 each)"})
    model_init_kwargs: dict | str | None = field(
        default=None, metadata={"help": "kwargs for every from_pretrained of policy/ref/critic (dtype, attn_implementation, revision, ...)"}
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: on when the GPU supports it"})

    def __post_init__(self) -> None:
        if self.kl_coef is not None:
            self.omega_prime = self.alpha_hat = self.kl_coef
        self.coefficients()  # one clear error for a negative / non-finite ω' or α̂
        if self.response_length is None or self.response_length < 1:
            raise ValueError(f"response_length must be >= 1, got {self.response_length}")
        if self.temperature != 1.0:
            raise ValueError(
                f"temperature must be 1.0 (got {self.temperature}): −α̂·log πθ in the reward is the log-prob of the sampling distribution"
            )
        self._check_estimator()
        for name in ("num_ppo_epochs", "num_mini_batches", "local_rollout_forward_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cliprange", "cliprange_value", "vf_coef"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0):
            raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={self.gamma}, lam={self.lam}")
        if self.suppress_token_ids is not None and any(i < 0 for i in self.suppress_token_ids):
            raise ValueError(f"suppress_token_ids must be token ids >= 0, got {self.suppress_token_ids}")
        if self.total_episodes is not None and self.total_episodes < 1:
            raise ValueError(f"total_episodes must be >= 1, got {self.total_episodes}")
        if self.reward_weights is not None and self.reward_funcs is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError("reward_weights must have one weight per entry of reward_funcs")
        if isinstance(self.model_init_kwargs, str):  # from the command line: a JSON object
            import json

            try:
                self.model_init_kwargs = json.loads(self.model_init_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(f"model_init_kwargs must be a JSON object, got {self.model_init_kwargs!r} ({error})") from None
        if self.bf16 is None:  # from the device, never by hand: CPUs and old GPUs get fp32
            self.bf16 = bf16_supported_on_device(self.use_cpu) and not self.fp16
        super().__post_init__()

    def _check_estimator(self) -> None:
        """Resolve the estimator's defaults and refuse what a group baseline cannot do, in one line each."""
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"advantage_estimator must be one of {ADVANTAGE_ESTIMATORS}, got {self.advantage_estimator!r}"
            )
        critic_free = self.advantage_estimator != "gae"
        if self.num_generations is None:
            self.num_generations = {"gae": 1, "rloo": 2, "grpo": 8}[self.advantage_estimator]
        if self.num_generations < 1 or (critic_free and self.num_generations < 2):
            raise ValueError(
                f"num_generations must be >= 2 for advantage_estimator={self.advantage_estimator} "
                f"(the baseline is the other completions of the same prompt), got {self.num_generations}"
                if critic_free
                else f"num_generations must be >= 1, got {self.num_generations}"
            )
        if self.local_batch_size % self.num_generations != 0:
            raise ValueError(
                f"num_generations={self.num_generations} must divide the rollout's {self.local_batch_size} completions "
                "(per_device_train_batch_size × gradient_accumulation_steps × num_mini_batches)"
            )
        scale = {"true": "group", "false": "none"}.get(str(self.scale_rewards).lower(), self.scale_rewards)
        if scale not in GROUP_SCALINGS:
            raise ValueError(
                f"scale_rewards must be one of {GROUP_SCALINGS} (or true / false), got {self.scale_rewards!r}"
            )
        self.scale_rewards = scale
        if critic_free and self.value_model_path is not None:
            raise ValueError(
                f"value_model_path is for the critic of advantage_estimator=gae; {self.advantage_estimator} has none"
            )
        if self.whiten_advantages is None:
            self.whiten_advantages = not critic_free

    def coefficients(self) -> RewardCoefficients:
        """(ω', α̂) validated by :class:`rpg.reward.RewardCoefficients`."""
        return RewardCoefficients.residual(self.omega_prime, self.alpha_hat)

    @property
    def local_batch_size(self) -> int:
        """Completions per rollout on one process (``num_generations`` per prompt)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_mini_batches

    @property
    def local_mini_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps
