"""Training logs: episode returns, one metrics row per iteration, and where the rows go.

Each iteration writes one row to ``run_dir/metrics.jsonl`` (the record tables and plots read), the
same numbers to TensorBoard (``run_dir/tb``), and the latest return to a progress bar. A resumed run
first drops the rows a killed run logged after its last checkpoint (:func:`drop_rows_after`), so
every step appears once.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from rpg.utils.atomic import write_text_atomic
from rpg_control.actor_critic import ActorCritic
from rpg_control.config import TrainConfig
from rpg_control.run_state import TrainState
from rpg_control.storage import RolloutBuffer

METRICS_FILE = "metrics.jsonl"  # in the run folder: one JSON row per iteration
# Row fields that measure the machine, not the run: they differ between two runs of one seed.
WALL_CLOCK_FIELDS = ("steps_per_second", "rollout_seconds", "update_seconds", "wall_seconds")


class EpisodeStats:
    """Per-env running sums of one episode; finished episodes go to windows of recent episodes."""

    def __init__(self, num_envs: int, window: int):
        self.basic = np.zeros(num_envs)
        self.addon = np.zeros(num_envs)
        self.metric = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.recent = {k: deque(maxlen=window) for k in ("basic", "addon", "total", "metric", "length")}
        self.finished = 0

    def add(self, basic, addon, metric, done) -> None:
        self.basic += basic
        self.addon += addon
        self.metric += metric
        self.length += 1
        for i in np.flatnonzero(done):
            self.recent["basic"].append(self.basic[i])
            self.recent["addon"].append(self.addon[i])
            self.recent["total"].append(self.basic[i] + self.addon[i])
            self.recent["metric"].append(self.metric[i] / self.length[i])
            self.recent["length"].append(self.length[i])
            self.basic[i] = self.addon[i] = self.metric[i] = 0.0
            self.length[i] = 0
            self.finished += 1

    def means(self) -> dict[str, float | None]:
        def mean(name):
            return float(np.mean(self.recent[name])) if self.recent[name] else None

        return {
            "episode_return_total": mean("total"),
            "episode_return_basic": mean("basic"),
            "episode_return_addon": mean("addon"),
            "addon_metric": mean("metric"),
            "episode_length": mean("length"),
        }


class IterationClock:
    """Wall-clock timing of the run (this process) and of the current iteration's two phases."""

    def __init__(self, start_step: int):
        self.start_time, self.start_step = time.perf_counter(), start_step
        self.iteration_start = self.rollout_seconds = 0.0

    def start_iteration(self) -> None:
        self.iteration_start = time.perf_counter()

    def rollout_done(self) -> None:
        self.rollout_seconds = time.perf_counter() - self.iteration_start

    def fields(self, step: int) -> dict[str, float]:
        """The :data:`WALL_CLOCK_FIELDS` of a metrics row, measured now (after the update)."""
        now = time.perf_counter()
        return {
            "steps_per_second": (step - self.start_step) / max(now - self.start_time, 1e-9),
            "rollout_seconds": self.rollout_seconds,
            "update_seconds": now - self.iteration_start - self.rollout_seconds,
            "wall_seconds": now - self.start_time,
        }


def metrics_row(
    state: TrainState,
    episodes: EpisodeStats,
    buffer: RolloutBuffer,
    rewards: torch.Tensor,
    update_stats: dict[str, float],
    critic_warmup: bool,
    uses_prior: bool,
    clock: IterationClock,
) -> dict:
    """One iteration's record: episode returns, the eq. 8 reward and its log-probability terms, the PPO
    update's statistics, the learning rate and policy σ, and the wall-clock fields (measured last)."""
    return {
        "step": state.step,
        "iteration": state.iteration,
        **episodes.means(),
        "episodes": episodes.finished,
        "rpg_reward_mean": float(rewards.mean()),
        "logprob_mean": float(buffer.logprobs.mean()),
        "prior_logprob_mean": float(buffer.prior_logprobs.mean()) if uses_prior else None,
        **update_stats,
        "learning_rate": state.optimizer.param_groups[0]["lr"],
        "action_std_mean": mean_action_std(state.model, buffer.obs[0]),
        "critic_warmup": critic_warmup,
        **clock.fields(state.step),
    }


@torch.no_grad()
def mean_action_std(model: ActorCritic, obs: torch.Tensor) -> float:
    """σ of the policy averaged over action dimensions and the given (normalized) observations."""
    return float(model.actor.distribution_params(obs)[1].exp().mean())


def drop_rows_after(path: Path, step: int) -> None:
    """Keep only the metrics rows up to ``step`` (atomic rewrite), so a resumed run's log has no repeats.

    A line cut short by a kill mid-write (not valid JSON) is dropped: its iteration is redone anyway.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


class TrainingLog:
    """The run's outputs besides checkpoints: ``config.json``, ``metrics.jsonl``, TensorBoard, progress bar."""

    def __init__(self, run_dir: Path, config: TrainConfig, step: int, progress: bool, description: str):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        # a slow import: only when a run starts
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"))
        drop_rows_after(run_dir / METRICS_FILE, step)  # rows a killed run logged after its last checkpoint
        self.metrics_file = open(run_dir / METRICS_FILE, "a")  # noqa: SIM115 - open all run; close()
        self.bar = ProgressBar(config.total_steps, step, enabled=progress, description=description)
        self.last_row: dict = {}

    def write(self, row: dict, score: float | None) -> None:
        """Log one iteration's ``row``; ``score`` (the selection metric) goes to the progress bar."""
        self.last_row = row
        self.metrics_file.write(json.dumps(row) + "\n")
        self.metrics_file.flush()
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "iteration"):
                self.writer.add_scalar(key, value, row["step"])
        self.bar.update(row["step"], score)

    def close(self) -> None:
        self.bar.close()
        self.metrics_file.close()
        self.writer.close()


class ProgressBar:
    """A rich progress bar with env steps, steps/s and the latest return (silent when disabled)."""

    def __init__(self, total: int, completed: int, enabled: bool, description: str):
        self.progress = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} steps/s"),
            TextColumn("return {task.fields[score]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed, speed="-", score="-")
        self.start, self.start_step = time.perf_counter(), completed

    def update(self, step: int, score: float | None) -> None:
        if self.progress is None:
            return
        speed = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
        shown = "-" if score is None else f"{score:,.1f}"
        self.progress.update(self.task, completed=step, speed=f"{speed:,.0f}", score=shown)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
