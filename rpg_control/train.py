"""Training: collect a rollout, compute the RPG reward, update with PPO, log, checkpoint. Repeat.

Read top to bottom, ``train`` is the whole algorithm (CleanRL style); each step is a named function
of its own module (as rsl_rl's runner delegates to its algorithm and storage):

=====================  ========================================================================
``run_state``          start fresh or resume from ``checkpoints/last.pt``; the checkpoint payload
``rollout``            collect T steps of N envs with the current policy (and π_prior's log-probs)
``storage``            the [T, N] rollout buffer and the RPG reward of eq. 8 on it
``algorithm``          the PPO update (eq. 6-7) on the rollout
``train_log``          episode returns, the metrics row, metrics.jsonl / TensorBoard / progress bar
``checkpoint``         checkpoint files (atomic writes), the prior policy
=====================  ========================================================================

Resume: if ``run_dir/checkpoints/last.pt`` exists, training continues from it (model, optimizer,
normalizer, learning rate, counters, RNG). Episodes that were running when the run stopped
are not resumed: the envs start fresh episodes.
"""

from __future__ import annotations

from pathlib import Path

from rpg_control.algorithm import Rollout, ppo_update
from rpg_control.checkpoint import CheckpointPaths, build_model, save_atomic
from rpg_control.config import TrainConfig, validate_config
from rpg_control.envs import get_env_spec, make_vec_env
from rpg_control.rollout import ActionBounds, collect_rollout
from rpg_control.run_lock import run_lock
from rpg_control.run_state import (
    TrainState,
    checkpoint_payload,
    load_resume,
    run_prior,
    start_or_resume,
)
from rpg_control.storage import RolloutBuffer
from rpg_control.train_log import EpisodeStats, IterationClock, TrainingLog, metrics_row

__all__ = ["EpisodeStats", "build_model", "train"]  # build_model: kept importable from here for callers


def train(config: TrainConfig, run_dir: str | Path, progress: bool = True) -> Path:
    """Train ``config`` in ``run_dir`` (resuming from ``checkpoints/last.pt``); return ``run_dir``.

    Holds ``run_dir``'s lock for the whole run: a second trainer on the same folder is refused in one
    line naming the holder (see ``rpg_control.run_lock``).
    """
    validate_config(config)
    with run_lock(run_dir):
        return _train_locked(config, Path(run_dir), progress)


def _train_locked(config: TrainConfig, run_dir: Path, progress: bool) -> Path:
    paths, spec = CheckpointPaths.of(run_dir), get_env_spec(config.env)
    # 0. everything that can fail on bad input, before any simulation ----------------------------
    resume = load_resume(paths, config)
    prior = run_prior(config, resume)
    coefficients, entropy_coef, reward_kind = config.reward_setup()
    state = start_or_resume(config, prior, resume, paths)
    reward_prior = prior if coefficients.needs_prior else None  # the π_prior eq. 8 reads (None: ω' unused)
    warmup_steps = int(config.critic_warmup_fraction * config.total_steps) if prior is not None else 0

    envs = make_vec_env(spec.name, config.num_envs, config.backend, config.env_kwargs)
    obs = envs.reset(seed=config.seed + 7919 * state.iteration)  # a resumed run starts fresh episodes
    bounds, episodes = ActionBounds(envs), EpisodeStats(config.num_envs, config.episode_window)
    buffer = RolloutBuffer(config.steps_per_env, config.num_envs, spec.obs_dim, spec.act_dim)
    log = TrainingLog(run_dir, config, state.step, progress, description=f"{config.variant} {spec.name}")
    clock = IterationClock(state.step)
    try:
        while state.step < config.total_steps:
            # 1. rollout ------------------------------------------------------------------------
            clock.start_iteration()
            obs, last_values = collect_rollout(
                envs, obs, state, buffer, episodes, bounds, config.normalize_obs, reward_prior
            )
            state.step += config.batch_size
            state.iteration += 1
            clock.rollout_done()
            # 2. the RPG reward (eq. 8) and the PPO update (eq. 6-7) ----------------------------
            rewards = buffer.rpg_rewards(reward_kind, coefficients, config.reward_scale)
            warming_up = state.step <= warmup_steps
            stats = _update(state, buffer.as_rollout(rewards, last_values), config, entropy_coef, warming_up)
            # 3. log ----------------------------------------------------------------------------
            row = metrics_row(state, episodes, buffer, rewards, stats, warming_up, coefficients.needs_prior, clock)
            log.write(row, row.get(config.selection_key()))
            # 4. checkpoints --------------------------------------------------------------------
            if _checkpoint_due(state.step, config):
                _save_checkpoints(config, state, paths, row.get(config.selection_key()), warming_up, row)
    finally:
        log.close()
        envs.close()
    if not paths.best.exists():  # no episode finished yet: the last policy is the best we know
        state.best_step = state.step
        score = log.last_row.get(config.selection_key())
        save_atomic(checkpoint_payload(config, state, score, log.last_row), paths.best)
    return run_dir


def _update(state: TrainState, rollout: Rollout, config: TrainConfig, entropy_coef: float, warming_up: bool) -> dict:
    """One PPO update (``algorithm.ppo_update``); during the critic warm-up the actor stays as it is."""
    if config.lr_schedule == "linear":
        for group in state.optimizer.param_groups:
            group["lr"] = config.learning_rate * max(0.0, 1.0 - state.step / config.total_steps)
    return ppo_update(state.model, state.optimizer, rollout, config, entropy_coef, update_actor=not warming_up)


def _checkpoint_due(step: int, config: TrainConfig) -> bool:
    """True on the iteration that crosses a multiple of ``checkpoint_every_steps``, and on the last one."""
    every = config.checkpoint_every_steps
    return step // every > (step - config.batch_size) // every or step >= config.total_steps


def _save_checkpoints(
    config: TrainConfig, state: TrainState, paths: CheckpointPaths, score: float | None, warming_up: bool, row: dict
) -> None:
    """best.pt if ``score`` beats the best so far (never during the critic warm-up), then last.pt.

    best.pt before last.pt: killed between the two, the resumed run reads the new best score from
    best.pt (``run_state.best_so_far``), so no kill point lets a worse policy replace the best one.
    """
    if score is not None and score > state.best_score and not warming_up:
        state.best_score, state.best_step = score, state.step
        save_atomic(checkpoint_payload(config, state, score, row), paths.best)
    save_atomic(checkpoint_payload(config, state, score, row), paths.last)
