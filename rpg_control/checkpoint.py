"""Checkpoint files: where they live, atomic writes, bit-exact round trips, the policy they hold,
and the prior of a customization run.

A checkpoint is one ``torch.save`` dict: the config (``dataclasses.asdict``), env sizes, the
actor-critic, optimizer and observation-normalizer states, the step counters, the learning
rate, the best score so far, the RNG states, and — for customization — the frozen prior
(actor + normalizer) so a run resumes without the original prior file. What goes into it, and
how a run resumes from it, is ``rpg_control.run_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rpg.utils.atomic import atomic_write
from rpg_control.actor_critic import ActorCritic, GaussianActor, ObservationNormalizer
from rpg_control.config import ConfigError, TrainConfig, config_from_dict
from rpg_control.envs import get_env_spec

FORMAT = "rpg_control/1"


@dataclass(frozen=True)
class CheckpointPaths:
    """A run folder's two checkpoints: ``last.pt`` (resume from here) and ``best.pt`` (the selected policy)."""

    folder: Path

    @classmethod
    def of(cls, run_dir: str | Path) -> CheckpointPaths:
        return cls(Path(run_dir) / "checkpoints")

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"


def build_model(config: TrainConfig) -> tuple[ActorCritic, ObservationNormalizer]:
    """A freshly initialized actor-critic and observation normalizer sized for ``config.env``."""
    spec = get_env_spec(config.env)
    return ActorCritic.from_config(config, spec.obs_dim, spec.act_dim), ObservationNormalizer(spec.obs_dim)


def load_policy(payload: dict) -> tuple[TrainConfig, ActorCritic, ObservationNormalizer]:
    """The config, actor-critic (in eval mode) and observation normalizer a loaded checkpoint holds."""
    config = config_from_dict(payload["config"])
    model, normalizer = build_model(config)
    model.load_state_dict(payload["model"])
    normalizer.load_state_dict(payload["normalizer"])
    model.eval()
    return config, model, normalizer


def save_atomic(payload: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX)."""
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_atomic`; one-line error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an rpg_control checkpoint")
    return payload


@dataclass
class PriorPolicy:
    """π_prior of eq. 8: a frozen Gaussian actor with its own (frozen) observation normalizer."""

    actor: GaussianActor
    normalizer: ObservationNormalizer
    config: TrainConfig

    @torch.no_grad()
    def log_prob(self, raw_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.actor.distribution_params(self.normalizer(raw_obs))
        return GaussianActor.log_prob(actions, mean, log_std)

    def state(self) -> dict:
        """What a customization checkpoint keeps of its prior (read back by :func:`prior_from_state`)."""
        return {
            "actor": self.actor.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "config": self.config.to_dict(),
        }


def prior_from_state(state: dict) -> PriorPolicy:
    config = config_from_dict(state["config"])
    spec = get_env_spec(config.env)
    actor = GaussianActor(
        spec.obs_dim, spec.act_dim, list(config.actor_hidden), config.activation, config.init_std, config.std_type
    )
    actor.load_state_dict(state["actor"])
    normalizer = ObservationNormalizer(spec.obs_dim)
    normalizer.load_state_dict(state["normalizer"])
    for module in (actor, normalizer):
        module.eval()
        module.requires_grad_(False)
    return PriorPolicy(actor, normalizer, config)


def prior_state(payload: dict) -> dict:
    """The parts of a (prior) checkpoint a customization run keeps: actor, normalizer, config."""
    actor = {k[len("actor.") :]: v for k, v in payload["model"].items() if k.startswith("actor.")}
    return {"actor": actor, "normalizer": payload["normalizer"], "config": payload["config"]}


def load_prior(config: TrainConfig) -> PriorPolicy:
    """Load and check ``config.prior``: it must be a checkpoint of the same env with the same sizes.

    The customized actor is initialized from the prior, so the actor architecture is taken from
    the prior (``config`` must not contradict it).
    """
    payload = load_checkpoint(config.prior)
    prior_config = config_from_dict(payload["config"])
    if prior_config.env != config.env:
        raise ConfigError(f"prior {config.prior} was trained on {prior_config.env}, not {config.env}")
    spec = get_env_spec(config.env)
    sizes = (payload["env"]["obs_dim"], payload["env"]["act_dim"])
    if sizes != (spec.obs_dim, spec.act_dim):
        raise ConfigError(
            f"prior {config.prior} has obs/act sizes {sizes}, {config.env} needs {(spec.obs_dim, spec.act_dim)}"
        )
    mismatched = [
        name
        for name in ("actor_hidden", "activation", "std_type")
        if _as_comparable(getattr(prior_config, name)) != _as_comparable(getattr(config, name))
    ]
    if mismatched:
        details = ", ".join(f"{n}={getattr(prior_config, n)!r} (config has {getattr(config, n)!r})" for n in mismatched)
        raise ConfigError(f"prior {config.prior} actor does not match the config: {details}")
    return prior_from_state(prior_state(payload))


def export_policy(checkpoint: str | Path, output: str | Path) -> Path:
    """Write a slim copy of a checkpoint (no optimizer or RNG state): enough to evaluate it or to
    use it as a prior, not to resume its training."""
    payload = load_checkpoint(checkpoint)
    slim = {k: v for k, v in payload.items() if k not in ("optimizer", "rng")}
    slim["exported_from"] = str(checkpoint)
    save_atomic(slim, output)
    return Path(output)


def _as_comparable(value):
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else value
