"""Evaluate a checkpoint: N full episodes, deterministic (mean action) by default.

Reports total (r + r_R), basic (r) and add-on (r_R) episode returns and the add-on metric
(episode mean of |θ|, z or v_y), each as mean ± std over episodes — the columns of Table II.
Episodes are spread over parallel envs with a fixed quota per env, so short episodes are not
over-represented.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rpg.utils.provenance import provenance
from rpg_control.actor_critic import ActorCritic, ObservationNormalizer
from rpg_control.checkpoint import load_checkpoint, load_policy
from rpg_control.config import ConfigError
from rpg_control.envs import make_vec_env
from rpg_control.rollout import ActionBounds, policy_input


def evaluate(
    checkpoint: str | Path, episodes: int = 100, seed: int = 0, deterministic: bool = True, num_envs: int | None = None
) -> dict:
    """Run ``episodes`` episodes of the checkpoint's policy; return the Table II columns and the run's record."""
    if not isinstance(episodes, int) or episodes <= 0:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
    payload = load_checkpoint(checkpoint)
    config, model, normalizer = load_policy(payload)
    num_envs = num_envs or min(episodes, 16)
    envs = make_vec_env(config.env, num_envs, config.backend, config.env_kwargs)
    try:
        policy = _policy(model, normalizer, config.normalize_obs, deterministic, seed)
        results = _run_episodes(envs, num_envs, policy, episodes, seed)
    finally:
        envs.close()
    table = np.array(results)
    columns = {
        "total": table[:, 0] + table[:, 1],
        "basic": table[:, 0],
        "addon": table[:, 1],
        "addon_metric": table[:, 2],
    }
    report = {name: {"mean": float(values.mean()), "std": float(values.std())} for name, values in columns.items()}
    report.update(
        episodes=len(results),
        env=config.env,
        variant=config.variant,
        checkpoint=str(checkpoint),
        checkpoint_step=payload["step"],
        deterministic=deterministic,
        seed=seed,
        training={
            "seed": config.seed,
            "total_steps": config.total_steps,
            "backend": config.backend,
            "best_score": _finite_or_none(payload.get("best_score")),
            # wall time and speed of the (last resumed part of the) run that wrote the checkpoint
            "wall_seconds": (payload.get("metrics") or {}).get("wall_seconds"),
            "steps_per_second": (payload.get("metrics") or {}).get("steps_per_second"),
            "provenance": payload.get("provenance"),  # of the training run (absent in early checkpoints)
        },
        provenance=provenance(),
    )
    return report


def _policy(
    model: ActorCritic, normalizer: ObservationNormalizer, normalize_obs: bool, deterministic: bool, seed: int
) -> Callable[[np.ndarray], torch.Tensor]:
    """Raw observations -> actions: the Gaussian's mean, or a sample from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def act(obs: np.ndarray) -> torch.Tensor:
        observed = policy_input(normalizer, torch.as_tensor(obs, dtype=torch.float32), normalize_obs)
        if deterministic:
            return model.actor.distribution_params(observed)[0]
        return model.actor.sample(observed, generator=generator)[0]

    return act


def _run_episodes(envs, num_envs: int, policy, episodes: int, seed: int) -> list[tuple[float, float, float]]:
    """(basic return, add-on return, mean add-on metric) of ``episodes`` episodes, a fixed quota per env."""
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    bounds = ActionBounds(envs)
    sums = np.zeros((num_envs, 3))  # basic, add-on, metric
    lengths = np.zeros(num_envs, dtype=np.int64)
    results: list[tuple[float, float, float]] = []
    counts = np.zeros(num_envs, dtype=np.int64)
    obs = envs.reset(seed=seed)
    while (counts < quota).any():
        out = envs.step(bounds.clip(policy(obs)))
        sums += np.stack([out.reward, out.addon_reward, out.addon_metric], axis=1)
        lengths += 1
        for i in np.flatnonzero(out.terminated | out.truncated):
            if counts[i] < quota[i]:
                basic, addon, metric = sums[i]
                results.append((basic, addon, metric / lengths[i]))
                counts[i] += 1
            sums[i] = 0.0
            lengths[i] = 0
        obs = out.obs
    return results


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None
