"""Training configuration: one dataclass, defaults from YAML (``rpg_control/configs/``).

``load_config(env, variant, overrides)`` merges ``defaults.yaml`` → ``<env>.yaml: ppo`` →
``<env>.yaml: variants.<variant>`` → ``overrides`` and validates the result, so every bad input
(unknown env/variant/key, a negative coefficient, a customization variant without a prior)
fails with one clear ``ConfigError`` line before any simulation starts.

Variants (docs/theory.md §1 and §3, paper Sec. III-IV):

=========  ==================  =======================================  ======================
variant    task reward         reward coefficients (rpg.reward)          entropy in the loss
=========  ==================  =======================================  ======================
none       r                   ω'=0, α̂=0                                 0
end        r                   ω'=0, α̂=0                                 α
repeat     r                   ω'=0, α̂=α                                 α
soft       r                   ω'=0, α̂=α                                 0
full       r + r_R             ω'=0, α̂=α  (Soft PPO on the full task)   0
greedy     r_R                 ω'=0, α̂                                   0   (needs a prior)
kl         r_R                 ω'=α̂                                      0   (needs a prior)
residual   r_R                 ω', α̂                                     0   (needs a prior)
=========  ==================  =======================================  ======================
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rpg.reward import RewardCoefficients, entropy_regularization
from rpg_control.variants import CUSTOMIZATION_VARIANTS, ENTROPY_VARIANTS, VARIANTS

CONFIG_DIR = Path(__file__).parent / "configs"
ENVS = ("halfcheetah", "hopper", "ant")
BACKENDS = ("native", "gymnasium", "envpool")


# selection_metric -> the logged training return (mean of the last ``episode_window`` episodes) it names.
# "task" is the paper's choice and today's default: the return of the task the variant trains on, i.e. the
# basic return r for the entropy variants and the total return r + r_R for Full Policy, Greedy, KL and
# Residual PPO. Note that for Greedy PPO "task" (= "total") lets the checkpoint selection see the basic
# reward r that Greedy PPO's training reward deliberately leaves out; "addon" selects on r_R alone.
SELECTION_METRICS = {"total": "episode_return_total", "basic": "episode_return_basic", "addon": "episode_return_addon"}
SELECTION_CHOICES = ("task",) + tuple(SELECTION_METRICS)
# Iteration-based spacing of earlier versions; load_config still accepts it (× batch size = env steps).
LEGACY_CHECKPOINT_KEY = "checkpoint_every"


class ConfigError(ValueError):
    """Bad user input, reported as one line before any expensive work."""


@dataclass
class TrainConfig:
    env: str
    variant: str
    seed: int = 0
    total_steps: int = 1_000_000
    prior: str | None = None
    backend: str = "native"
    env_kwargs: dict = field(default_factory=dict)
    num_envs: int = 32
    steps_per_env: int = 64
    num_epochs: int = 5
    num_minibatches: int = 4
    learning_rate: float = 3e-4
    lr_schedule: str = "adaptive"
    target_kl: float = 0.01
    lr_min: float = 1e-5
    lr_max: float = 1e-2
    clip_range: float = 0.2
    value_clip_range: float | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    actor_hidden: list = field(default_factory=lambda: [64, 64])
    critic_hidden: list = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    init_std: float = 1.0
    std_type: str = "global"
    normalize_obs: bool = True
    normalize_advantage: bool = True
    reward_scale: float = 1.0
    critic_warmup_fraction: float = 0.05
    episode_window: int = 32
    # Env steps between checkpoints (last.pt is rewritten; best.pt is replaced when the selection
    # metric improved). In env steps, not iterations, so an env with a large batch (Ant: 8192 steps
    # per iteration) gets as many best-checkpoint candidates per million steps as the others.
    checkpoint_every_steps: int = 40960
    # The logged training return that picks best.pt (see SELECTION_METRICS).
    selection_metric: str = "task"
    alpha: float = 0.0
    omega_prime: float = 0.0
    alpha_hat: float = 0.0

    # -- derived ---------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.num_envs * self.steps_per_env

    @property
    def is_customization(self) -> bool:
        return self.variant in CUSTOMIZATION_VARIANTS

    def reward_setup(self) -> tuple[RewardCoefficients, float, str]:
        """(coefficients of r_RPG, entropy coefficient on −H in the loss, task reward: basic|full|addon)."""
        if self.variant in ENTROPY_VARIANTS:
            regularization = entropy_regularization(self.variant, self.alpha)
            return regularization.reward_coefficients, regularization.loss_entropy_coef, "basic"
        if self.variant == "full":
            return RewardCoefficients.soft(self.alpha), 0.0, "full"
        return RewardCoefficients.residual(self.omega_prime, self.alpha_hat), 0.0, "addon"

    def selection_key(self) -> str:
        """The metrics.jsonl column that picks best.pt (``selection_metric`` resolved for this variant)."""
        choice = self.selection_metric
        if choice == "task":
            choice = "basic" if self.variant in ENTROPY_VARIANTS else "total"
        return SELECTION_METRICS[choice]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _read_yaml(path: Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def _normalize_env(env: str) -> str:
    key = str(env).lower().replace("-", "").replace("_", "")
    for name in ENVS:
        if key == name or key.startswith(name + "v"):  # halfcheetah, HalfCheetah-v5, ...
            return name
    raise ConfigError(f"unknown env {env!r}; choose one of: {', '.join(ENVS)}")


def load_config(env: str, variant: str, overrides: dict | None = None) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from the YAML defaults of ``env`` and ``variant``."""
    env = _normalize_env(env)
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    values: dict[str, Any] = dict(_read_yaml(CONFIG_DIR / "defaults.yaml"))
    env_file = _read_yaml(CONFIG_DIR / f"{env}.yaml")
    values.update(env_file.get("ppo", {}))
    values.update(env_file.get("variants", {}).get(variant, {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None or k in ("prior", "value_clip_range")})
    values["env"], values["variant"] = env, variant
    if LEGACY_CHECKPOINT_KEY in values:  # old key, in iterations (scripts, benchmarks)
        iterations = values.pop(LEGACY_CHECKPOINT_KEY)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations <= 0:
            raise ConfigError(f"{LEGACY_CHECKPOINT_KEY} must be a positive integer, got {iterations!r}")
        values["checkpoint_every_steps"] = iterations * values.get("num_envs", 1) * values.get("steps_per_env", 1)
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    config = TrainConfig(**values)
    validate_config(config)
    return config


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a config saved in a checkpoint (``dataclasses.asdict`` form)."""
    known = {k: v for k, v in values.items() if k in _FIELDS}
    return TrainConfig(**known)


def validate_config(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` (one line) for any inconsistent or out-of-range value."""
    _normalize_env(config.env)
    if config.variant not in VARIANTS:
        raise ConfigError(f"unknown variant {config.variant!r}; choose one of: {', '.join(VARIANTS)}")
    for name in ("alpha", "omega_prime", "alpha_hat", "reward_scale"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.reward_scale == 0:
        raise ConfigError("reward_scale must be > 0")
    positive_ints = (
        "total_steps",
        "num_envs",
        "steps_per_env",
        "num_epochs",
        "num_minibatches",
        "episode_window",
        "checkpoint_every_steps",
    )
    for name in positive_ints:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if config.num_minibatches > config.batch_size:
        raise ConfigError(
            f"num_minibatches ({config.num_minibatches}) exceeds the batch num_envs*steps_per_env ({config.batch_size})"
        )
    for name in ("learning_rate", "clip_range", "target_kl", "init_std", "max_grad_norm", "lr_min", "lr_max"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if config.value_clip_range is not None and config.value_clip_range <= 0:
        raise ConfigError(f"value_clip_range must be > 0 or null, got {config.value_clip_range!r}")
    if not (0 <= config.gamma <= 1 and 0 <= config.gae_lambda <= 1):
        raise ConfigError(f"gamma and gae_lambda must lie in [0, 1], got {config.gamma}, {config.gae_lambda}")
    if not 0 <= config.critic_warmup_fraction < 1:
        raise ConfigError(f"critic_warmup_fraction must lie in [0, 1), got {config.critic_warmup_fraction}")
    if config.selection_metric not in SELECTION_CHOICES:
        choices = ", ".join(SELECTION_CHOICES)
        raise ConfigError(f"unknown selection_metric {config.selection_metric!r}; choose one of: {choices}")
    if config.lr_schedule not in ("adaptive", "fixed", "linear"):
        raise ConfigError(f"unknown lr_schedule {config.lr_schedule!r}; choose one of: adaptive, fixed, linear")
    if config.std_type not in ("global", "state"):
        raise ConfigError(f"unknown std_type {config.std_type!r}; choose one of: global, state")
    if config.activation not in ("tanh", "relu", "elu"):
        raise ConfigError(f"unknown activation {config.activation!r}; choose one of: tanh, relu, elu")
    if config.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {config.backend!r}; choose one of: {', '.join(BACKENDS)}")
    if config.backend == "envpool":
        import importlib.util

        if importlib.util.find_spec("envpool") is None:
            raise ConfigError("backend envpool needs the envpool package: pip install 'rpg[envpool]'")
        if config.env_kwargs:
            raise ConfigError("the envpool backend takes no env_kwargs")
    if config.is_customization and not config.prior:
        raise ConfigError(f"variant {config.variant!r} customizes a prior: pass --prior CHECKPOINT")
    if config.prior and not config.is_customization:
        raise ConfigError(
            f"variant {config.variant!r} trains from scratch; --prior is for {', '.join(CUSTOMIZATION_VARIANTS)}"
        )
    if config.prior and not Path(config.prior).is_file():
        raise ConfigError(f"prior checkpoint not found: {config.prior}")
