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


def scale_rewards_from_trl(value) -> str:
    """TRL's booleans for GRPO's std scaling as its names: true = group, false = none; others unchanged."""
    return {"true": "group", "false": "none"}.get(str(value).lower(), value)


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
    omega_prime: float | None = field(
        default=None, metadata={"help": "ω': weight of log π_ref in the per-token reward (default 0.05, or kl_coef)"}
    )
    alpha_hat: float | None = field(
        default=None,
        metadata={"help": "α̂: weight of −log πθ, the entropy temperature of the result (default 0.05, or kl_coef)"},
    )
    kl_coef: float | None = field(
        default=None,
        metadata={
            "help": "β shorthand for classic KL-penalized RLHF: sets omega_prime = alpha_hat = β "
            "(give it alone, or omega_prime and alpha_hat)"
        },
    )
    kl_estimator: str = field(
        default="k1",
        metadata={
            "help": "estimator of the logged objective/kl_to_ref: 'k1' Σ(log πθ − log π_ref) or 'k3' "
            "Σ(r − 1 − log r), r = π_ref/πθ (lower variance); the reward itself always uses the exact log-probs"
        },
    )
    # --- rollout
    response_length: int = field(default=53, metadata={"help": "tokens sampled per completion"})
    temperature: float = field(
        default=1.0,
        metadata={"help": "sampling temperature; fixed to 1 (log πθ in the reward must be the sampling law)"},
    )
    total_episodes: int | None = field(
        default=None,
        metadata={
            "help": "completions to roll out in total (all processes); default: num_train_epochs × dataset size "
            "× num_generations"
        },
    )
    stop_token: str | None = field(
        default=None,
        metadata={
            "help": "'eos': completions stop at the tokenizer's EOS (sets stop_token_id). Unset, like "
            "stop_token_id: every completion is response_length tokens long (TRL's default)"
        },
    )
    stop_token_id: int | None = field(
        default=None,
        metadata={"help": "completions stop at this token (kept, and masked after); exclusive with stop_token"},
    )
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "subtracted from r_R of every completion without an EOS token (TRL's penalty)"}
    )
    num_sample_generations: int = field(
        default=10,
        metadata={
            "help": "times during training a table of greedy completions of eval_dataset prompts, with "
            "their r_R, is logged (0: never; needs an eval dataset)"
        },
    )
    ds3_gather_for_generation: bool = field(
        default=True,
        metadata={
            "help": "DeepSpeed ZeRO-3: gather the policy's weights for sampling (fast, needs the memory); "
            "False samples from the sharded model (slow, for models that do not fit on one GPU)"
        },
    )
    local_rollout_forward_batch_size: int = field(
        default=64, metadata={"help": "rows per no-grad forward when scoring a rollout"}
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "truncate prompts (from the left) to this many tokens"}
    )
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
        metadata={
            "help": "token ids never sampled: their logits are set to the lowest value before every "
            "softmax (sampling, policy and reference log-probs), so πθ and π_ref are "
            "renormalized over the rest"
        },
    )
    # --- models and reward source
    ref_model_path: str | None = field(
        default=None, metadata={"help": "reference π_ref (default: the policy's start; with LoRA: adapters off)"}
    )
    value_model_path: str | None = field(
        default=None,
        metadata={
            "help": "critic (default: a copy of the policy's trunk, value head 0). A sequence-classification "
            "checkpoint such as the reward model (TRL's usual setup) gives its trunk and its score head"
        },
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "AutoModelForSequenceClassification giving r_R"}
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "r_R as Python functions 'module:function' with TRL's reward-function signature"},
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "weights of reward_funcs (default 1 each)"}
    )
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "kwargs for every from_pretrained of policy/ref/critic/reward model (dtype, "
            "attn_implementation, revision, trust_remote_code, ...); dtype defaults to float32 "
            "(mixed precision comes from bf16/fp16)"
        },
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; default: on when the GPU supports it"}
    )

    def __post_init__(self) -> None:
        self._resolve_coefficients()
        self.coefficients()  # one clear error for a negative / non-finite ω' or α̂
        if self.response_length is None or self.response_length < 1:
            raise ValueError(f"response_length must be >= 1, got {self.response_length}")
        if self.temperature != 1.0:
            raise ValueError(
                f"temperature must be 1.0 (got {self.temperature}): −α̂·log πθ in the reward is the "
                "log-prob of the sampling distribution"
            )
        self._check_estimator()
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_ppo_epochs",
            "num_mini_batches",
            "local_rollout_forward_batch_size",
        ):
            if getattr(self, name) is None or getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cliprange", "cliprange_value", "vf_coef"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0):
            raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={self.gamma}, lam={self.lam}")
        if self.suppress_token_ids is not None and any(i < 0 for i in self.suppress_token_ids):
            raise ValueError(f"suppress_token_ids must be token ids >= 0, got {self.suppress_token_ids}")
        self._check_trl_options()
        if (
            self.reward_weights is not None
            and self.reward_funcs is not None
            and len(self.reward_weights) != len(self.reward_funcs)
        ):
            raise ValueError("reward_weights must have one weight per entry of reward_funcs")
        if isinstance(self.model_init_kwargs, str):  # from the command line: a JSON object
            import json

            try:
                self.model_init_kwargs = json.loads(self.model_init_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"model_init_kwargs must be a JSON object, got {self.model_init_kwargs!r} ({error})"
                ) from None
        if self.bf16 is None:  # from the device, never by hand: CPUs and old GPUs get fp32
            self.bf16 = bf16_supported_on_device(self.use_cpu) and not self.fp16
        super().__post_init__()
        self._check_training_options()

    def _resolve_coefficients(self) -> None:
        """kl_coef = β sets ω' = α̂ = β (eq. 10); given together with a different ω' or α̂ it is ambiguous."""
        if self.kl_coef is not None:
            conflicting = [
                f"{name}={getattr(self, name)}"
                for name in ("omega_prime", "alpha_hat")
                if getattr(self, name) is not None and getattr(self, name) != self.kl_coef
            ]
            if conflicting:
                raise ValueError(
                    f"kl_coef={self.kl_coef} sets omega_prime = alpha_hat = kl_coef but {', '.join(conflicting)} "
                    "was given too; give kl_coef alone or omega_prime and alpha_hat"
                )
            self.omega_prime = self.alpha_hat = self.kl_coef
        self.omega_prime = 0.05 if self.omega_prime is None else self.omega_prime
        self.alpha_hat = 0.05 if self.alpha_hat is None else self.alpha_hat

    def _check_trl_options(self) -> None:
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        if self.stop_token is not None and self.stop_token != "eos":
            raise ValueError(
                f"stop_token must be 'eos' or unset, got {self.stop_token!r} (a token id goes in stop_token_id)"
            )
        if self.stop_token is not None and self.stop_token_id is not None:
            raise ValueError(
                f"give stop_token or stop_token_id, not both (got {self.stop_token!r} and {self.stop_token_id})"
            )
        if self.stop_token_id is not None and self.stop_token_id < 0:
            raise ValueError(f"stop_token_id must be a token id >= 0, got {self.stop_token_id}")
        penalty = self.missing_eos_penalty
        if penalty is not None and not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"missing_eos_penalty must be a finite number >= 0, got {self.missing_eos_penalty}")
        if self.num_sample_generations < 0:
            raise ValueError(f"num_sample_generations must be >= 0, got {self.num_sample_generations}")
        if self.total_episodes is not None and self.total_episodes < 1:
            raise ValueError(f"total_episodes must be >= 1, got {self.total_episodes}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(f"num_train_epochs must be a finite number > 0, got {self.num_train_epochs}")

    def _check_training_options(self) -> None:
        """TrainingArguments options the trainer builds itself: fail here, not after the models load."""
        from transformers.integrations import get_reporting_integration_callbacks

        get_reporting_integration_callbacks(self.report_to)  # ValueError naming an unknown integration
        for name in ("logging_steps", "save_steps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(
                    f"{name} must be > 0 (an iteration count, or a fraction < 1 of all iterations), "
                    f"got {getattr(self, name)}"
                )
        import torch
        from transformers import Trainer, get_scheduler

        try:
            Trainer.get_optimizer_cls_and_kwargs(self)
        except (ValueError, ImportError) as error:
            optim = getattr(self.optim, "value", self.optim)
            raise ValueError(f"optim={optim}: {str(error).splitlines()[0]}") from None
        probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            get_scheduler(
                self.lr_scheduler_type,
                probe,
                num_warmup_steps=0,
                num_training_steps=10,
                scheduler_specific_kwargs=self.lr_scheduler_kwargs or None,
            )
        except (ValueError, TypeError) as error:
            scheduler = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
            raise ValueError(
                f"lr_scheduler_type={scheduler} with lr_scheduler_kwargs={self.lr_scheduler_kwargs}: "
                f"{str(error).splitlines()[0]}"
            ) from None

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
        scale = scale_rewards_from_trl(self.scale_rewards)
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
