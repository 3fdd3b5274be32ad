"""What a training run carries from one iteration to the next, and across a kill and a resume.

:class:`TrainState` is the model, optimizer, observation normalizer, prior, counters and best score.
:func:`start_or_resume` builds it (fresh, or restored from ``checkpoints/last.pt`` with its RNG state),
:func:`checkpoint_payload` turns it into the dict ``rpg_control.checkpoint.save_atomic`` writes.

Resume keeps three promises: a checkpoint is only resumed by the same run (:func:`load_resume`
compares the config fields that shape it), the resumed run continues the torch RNG stream, and the
best score survives a kill between the best.pt and last.pt writes (:func:`best_so_far`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rpg.utils.provenance import provenance
from rpg_control.actor_critic import ActorCritic, ObservationNormalizer
from rpg_control.algorithm import make_optimizer
from rpg_control.checkpoint import (
    FORMAT,
    CheckpointPaths,
    PriorPolicy,
    build_model,
    load_checkpoint,
    load_prior,
    prior_from_state,
)
from rpg_control.config import ConfigError, TrainConfig
from rpg_control.envs import get_env_spec

# Config fields a resumed run must share with the run that wrote the checkpoint (they shape the
# model, the batch or the reward); the others (total_steps, learning-rate settings, ...) may change.
RESUME_KEYS = (
    "env",
    "variant",
    "num_envs",
    "steps_per_env",
    "actor_hidden",
    "critic_hidden",
    "activation",
    "std_type",
    "alpha",
    "omega_prime",
    "alpha_hat",
)


@dataclass
class TrainState:
    """Everything a checkpoint saves: the learner, the counters, the best score, and who trained it."""

    model: ActorCritic
    normalizer: ObservationNormalizer
    normalizer_frozen: bool  # customization: π_θ starts equal to π_prior, so the prior's normalizer stays
    optimizer: torch.optim.Optimizer
    prior: PriorPolicy | None  # π_prior of eq. 8 (customization variants only)
    step: int = 0  # env steps so far, over all envs
    iteration: int = 0
    best_score: float = -math.inf
    best_step: int | None = None
    previous_sessions: list = field(default_factory=list)  # earlier processes that trained this run
    session_start_step: int = 0
    provenance: dict = field(default_factory=dict)


def check_same_run(saved_config: dict, config: TrainConfig, path: Path) -> None:
    """Refuse (one line) a checkpoint written by a run with other :data:`RESUME_KEYS`."""
    changed = [k for k in RESUME_KEYS if saved_config.get(k) != config.to_dict().get(k)]
    if changed:
        raise ConfigError(f"{path} was written by a different run ({', '.join(changed)} differ); use a new run_dir")


def load_resume(paths: CheckpointPaths, config: TrainConfig) -> dict | None:
    """``last.pt`` if the run folder has one (checked to belong to this run), else None."""
    if not paths.last.exists():
        return None
    resume = load_checkpoint(paths.last)
    check_same_run(resume["config"], config, paths.last)
    return resume


def run_prior(config: TrainConfig, resume: dict | None) -> PriorPolicy | None:
    """π_prior of a customization run: the copy inside ``last.pt`` when resuming, else ``config.prior``."""
    if not config.is_customization:
        return None
    return prior_from_state(resume["prior"]) if resume is not None else load_prior(config)


def start_or_resume(
    config: TrainConfig, prior: PriorPolicy | None, resume: dict | None, paths: CheckpointPaths
) -> TrainState:
    """A fresh state seeded with ``config.seed``, then overwritten by ``resume`` (last.pt) if given."""
    torch.manual_seed(config.seed)
    model, normalizer = build_model(config)
    if prior is not None:
        # Customization (App. D-2): the actor and its observation normalizer start as the prior's;
        # the critic is freshly initialized. The normalizer stays frozen so πθ starts equal to π_prior.
        model.actor.load_state_dict(prior.actor.state_dict())
        normalizer.load_state_dict(prior.normalizer.state_dict())
    state = TrainState(model, normalizer, prior is not None, make_optimizer(model, config), prior)
    if resume is not None:
        _restore(state, resume, paths.last)
    state.best_score, state.best_step = best_so_far(resume, paths.best, config)
    state.previous_sessions = list((resume or {}).get("training_sessions") or [])
    state.session_start_step, state.provenance = state.step, provenance()
    return state


def _restore(state: TrainState, resume: dict, path: Path) -> None:
    state.model.load_state_dict(resume["model"])
    try:
        state.optimizer.load_state_dict(resume["optimizer"])
    except ValueError:  # a checkpoint from before the actor/critic parameter groups
        print(f"warning: {path}: optimizer state has another layout; Adam restarts", file=sys.stderr)
    state.normalizer.load_state_dict(resume["normalizer"])
    state.step, state.iteration = resume["step"], resume["iteration"]
    torch.set_rng_state(resume["rng"]["torch"])


def best_so_far(resume: dict | None, best_path: Path, config: TrainConfig) -> tuple[float, int | None]:
    """(best score, its step) to resume with: the higher of last.pt's record and best.pt's own score.

    best.pt is written before last.pt, so a run killed between the two has a best.pt newer than
    last.pt's record; trusting last.pt alone would let the resumed run replace it with a worse policy.
    """
    best_score, best_step = -math.inf, None
    if resume is not None:
        best_score, best_step = resume["best_score"], resume.get("best_step")
    if best_path.exists():
        saved = load_checkpoint(best_path)
        check_same_run(saved["config"], config, best_path)
        if saved.get("best_score") is not None and saved["best_score"] > best_score:
            best_score, best_step = saved["best_score"], saved["step"]
    return best_score, best_step


def checkpoint_payload(config: TrainConfig, state: TrainState, score: float | None, last_row: dict) -> dict:
    """The checkpoint dict of ``state``; ``score`` is the selection metric now, ``last_row`` the latest metrics."""
    spec = get_env_spec(config.env)
    session = {
        "start_step": state.session_start_step,
        "end_step": state.step,
        "provenance": state.provenance,
        "wall_seconds": last_row.get("wall_seconds"),
        "steps_per_second": last_row.get("steps_per_second"),
    }
    return {
        "format": FORMAT,
        "config": config.to_dict(),
        "env": {"name": spec.name, "gym_id": spec.gym_id, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim},
        "step": state.step,
        "iteration": state.iteration,
        "best_score": state.best_score,
        "best_step": state.best_step,
        # the selection metric's value when this checkpoint was written (None: no episode finished yet)
        "selection": {"metric": config.selection_key(), "setting": config.selection_metric, "value": score},
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "normalizer": state.normalizer.state_dict(),
        "normalizer_frozen": state.normalizer_frozen,
        "prior": None if state.prior is None else state.prior.state(),
        "rng": {"torch": torch.get_rng_state()},
        "metrics": last_row,
        "provenance": state.provenance,
        # one entry per process that trained this run (a killed and resumed run has several)
        "training_sessions": state.previous_sessions + [session],
    }
