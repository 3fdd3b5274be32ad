"""The real runner: one reproduction run = train with ``rpg_control.train`` (which resumes from
the run's last checkpoint), then evaluate its best and last checkpoints with ``rpg_control.evaluate``.

Runner protocol (what a sweep calls, in any process): ``runner(spec, run_dir, progress) -> dict`` with
``eval`` ({"best": figures, "last": figures}, figures = {total, basic, addon, addon_metric} each
{mean, std}), and optionally ``config``, ``trained_steps``, ``resumed_from_step``, ``curve``
(rows of metrics.jsonl) and ``checkpoints``. ``best_stochastic`` / ``last_stochastic`` add the same
figures with sampled actions: a Soft PPO policy optimizes the return of its *stochastic* policy, and at
small budgets its mean action can score far from it (README, Job 3), so both are recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

from rpg_control.reproduce.plan import PRIOR_EVALUATION, RunSpec
from rpg_control.reproduce.store import REPO_ROOT, slim_checkpoint_bytes

CURVE_KEYS = ("step", "episode_return_total", "episode_return_basic", "episode_return_addon", "addon_metric")
EVAL_SEED_OFFSET = 10_000  # evaluation episodes never reuse a training seed's env resets
MAX_CURVE_POINTS = 200


def _absolute(path: str) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def read_curve(metrics_path: Path, max_points: int = MAX_CURVE_POINTS) -> list[dict]:
    """Rows of metrics.jsonl that carry an episode return, thinned evenly to at most ``max_points``."""
    if not metrics_path.exists():
        return []
    rows = []
    with open(metrics_path) as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            value = row.get("episode_return_total")
            if "step" in row and isinstance(value, (int, float)) and math.isfinite(value):
                rows.append({key: row.get(key) for key in CURVE_KEYS})
    if len(rows) > max_points:
        stride = len(rows) / max_points
        rows = [rows[int(i * stride)] for i in range(max_points - 1)] + [rows[-1]]
    return rows


def _figures(evaluation: dict) -> dict:
    return {
        key: {"mean": float(evaluation[key]["mean"]), "std": float(evaluation[key]["std"])}
        for key in ("total", "basic", "addon", "addon_metric")
    }


def _load_config(spec: RunSpec):
    from rpg_control.config import load_config

    overrides = {"seed": spec.seed, "total_steps": spec.steps}
    if spec.prior is not None:
        overrides["prior"] = str(_absolute(spec.prior))
    if spec.state_std:
        overrides["std_type"] = "state"
    return load_config(spec.env, spec.variant, overrides)


def config_fingerprint(spec: RunSpec) -> str | None:
    """sha256 of the run's resolved config (YAML defaults + overrides), without what the run id
    already holds (seed, steps, the prior by content hash). Part of the run id, so a change of the
    trainer's defaults plans new runs instead of reusing results made with other settings."""
    if spec.variant == PRIOR_EVALUATION:
        return None
    config = _comparable_config(dataclasses.asdict(_load_config(spec)))
    for key in ("prior", "seed", "total_steps"):  # already in the id (seed, steps) or by content (prior)
        config.pop(key, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _comparable_config(config: dict) -> dict:
    """The config in the form its fingerprint has always hashed, so settings that reproduce an earlier
    behaviour keep the run ids (and committed results) of that behaviour:

    - ``selection_metric: task`` is what every earlier run did: left out;
    - ``checkpoint_every_steps`` that is a whole number of iterations is hashed as the earlier
      ``checkpoint_every`` (iterations); any other spacing is new and hashed as itself.
    """
    config = dict(config)
    if config.get("selection_metric") == "task":
        config.pop("selection_metric")
    batch = config["num_envs"] * config["steps_per_env"]
    every = config.get("checkpoint_every_steps")
    if every is not None and every % batch == 0:
        config.pop("checkpoint_every_steps")
        config["checkpoint_every"] = every // batch
    return config


def train_and_evaluate(spec: RunSpec, run_dir: Path, progress: bool = True) -> dict:
    from rpg_control.evaluate import evaluate

    eval_seed = EVAL_SEED_OFFSET + spec.seed

    def evaluations(checkpoints: dict[str, Path]) -> dict:
        out = {}
        for name, path in checkpoints.items():
            for suffix, deterministic in (("", True), ("_stochastic", False)):
                out[name + suffix] = _figures(
                    evaluate(path, episodes=spec.episodes, seed=eval_seed, deterministic=deterministic)
                )
        return out

    if spec.variant == PRIOR_EVALUATION:
        start = time.perf_counter()
        evals = evaluations({"best": _absolute(spec.prior)})
        evals.update(last=evals["best"], last_stochastic=evals["best_stochastic"])
        record = checkpoint_record(_absolute(spec.prior), "best")
        record.pop("training_sessions")
        return {
            "eval": evals,
            "trained_steps": 0,
            "checkpoints": {"best": spec.prior},
            "evaluated_checkpoints": {"best": record, "last": record},
            "evaluation_seconds": round(time.perf_counter() - start, 2),
        }

    from rpg_control.train import train

    config = _load_config(spec)
    run_dir = Path(run_dir)
    resumed_from = _checkpoint_step(run_dir / "checkpoints" / "last.pt")
    start = time.perf_counter()
    train(config, run_dir, progress=progress)  # holds the run folder's lock (the sweep holds it around us too)
    trained = time.perf_counter()
    checkpoints = {name: run_dir / "checkpoints" / f"{name}.pt" for name in ("best", "last")}
    evals = evaluations(checkpoints)
    records = {name: checkpoint_record(path, name) for name, path in checkpoints.items()}
    return {
        "eval": evals,
        # Table II's prior is picked among Table I's Soft PPO runs: return the bytes of their best
        # checkpoint, so the driver never opens a file on a worker.
        **({"best_checkpoint": slim_checkpoint_bytes(checkpoints["best"])} if _prior_candidate(spec) else {}),
        "config": dataclasses.asdict(config),
        "selection_metric": {"setting": config.selection_metric, "key": config.selection_key()},
        "evaluated_checkpoints": records,
        "trained_steps": records["last"]["checkpoint_step"],
        "resumed_from_step": resumed_from,
        "curve": read_curve(run_dir / "metrics.jsonl"),
        "checkpoints": {name: str(path) for name, path in checkpoints.items()},
        "training_sessions": [records[name].pop("training_sessions") for name in ("best", "last")][1],
        "training_seconds": round(trained - start, 2),
        "evaluation_seconds": round(time.perf_counter() - trained, 2),
    }


def _prior_candidate(spec: RunSpec) -> bool:
    return spec.variant == "soft" and not spec.state_std


def checkpoint_record(path: Path, name: str) -> dict:
    """Which policy an evaluation row is: the env step its checkpoint was written at and the value of
    the selection metric then (for best.pt: the score that made it the best). Checkpoints written
    before these were recorded give what they hold and ``None`` for the rest ("not recorded")."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=False)
    selection = payload.get("selection")
    if selection is None:  # an older checkpoint: best.pt's score is its best_score; last.pt's is unknown
        value = payload.get("best_score") if name == "best" else None
        selection = {"metric": None, "setting": None, "value": value}
    value = selection.get("value")
    return {
        "checkpoint_step": int(payload["step"]),
        "best_step": payload.get("best_step"),
        "selection_metric": selection.get("metric"),
        "selection_setting": selection.get("setting"),
        "selection_value": float(value) if value is not None and math.isfinite(value) else None,
        "training_sessions": payload.get("training_sessions") or [],
    }


def _checkpoint_step(path: Path) -> int | None:
    if not path.exists():
        return None
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    return int(state.get("step", 0)) if isinstance(state, dict) else None
