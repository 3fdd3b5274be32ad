"""Run the exact-oracle benchmark: every (contender, seed) in its own process, each result cached as JSON.

The world is built (or loaded from its cache) once, before any worker starts; each worker loads it from
its folder, runs one contender with one seed on one torch thread and writes
``<runs_dir>/<run hash>/<contender key>/seed<k>.json`` atomically. The run hash covers the benchmark
settings and the world's config, so a rerun with the same ones skips every finished run (resumable) and
a changed setting starts a fresh folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rpg.utils.atomic import write_json_atomic
from rpg.utils.provenance import provenance
from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings, OracleProbe
from rpg_llm.toy.world import ToyWorld

__all__ = ["RunSpec", "run_hash", "run_folder", "result_path", "run_one", "run_benchmark", "load_results"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One (contender, seed) run: what a worker process needs (picklable)."""

    key: str
    seed: int
    settings: BenchmarkSettings
    world_dir: str
    path: str  # where its result JSON goes


def run_hash(settings: BenchmarkSettings, world: ToyWorld) -> str:
    """12 hex digits naming what a result depends on: the benchmark's settings, the world's config and the
    contenders' own trainer settings (``registry.trainer_settings``)."""
    from rpg_llm.toy.oracle_benchmark.registry import trainer_settings

    payload = {
        "settings": dataclasses.asdict(settings),
        "world": dataclasses.asdict(world.config),
        "trainers": trainer_settings(),
    }
    payload = json.dumps(payload, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def run_folder(runs_dir: str | Path, settings: BenchmarkSettings, world: ToyWorld) -> Path:
    return Path(runs_dir) / run_hash(settings, world)


def result_path(folder: Path, key: str, seed: int) -> Path:
    return Path(folder) / key / f"seed{seed}.json"


def _quiet_worker() -> None:
    """One torch thread per run (``--jobs`` runs share the cores), no library progress bars."""
    import torch

    torch.set_num_threads(1)
    try:
        from datasets.utils.logging import disable_progress_bar as datasets_quiet
        from transformers.utils.logging import disable_progress_bar as transformers_quiet

        datasets_quiet()
        transformers_quiet()
    except ImportError:  # older versions: the bars only add noise
        pass


def run_one(spec: RunSpec) -> str:
    """Run ``spec``'s contender with its seed against its own exact target; write and return its JSON path."""
    from rpg_llm.toy.oracle_benchmark.registry import all_contenders

    _quiet_worker()
    contender = all_contenders()[spec.key]
    world = ToyWorld.load(spec.world_dir)
    omega_prime, alpha_hat = contender.target(spec.settings)
    probe = OracleProbe(world, spec.settings, omega_prime, alpha_hat, spec.seed)
    path = Path(spec.path)
    work = path.parent / f".work-seed{spec.seed}"  # the trainer's output_dir; removed once the result is saved
    started, cpu_started = time.perf_counter(), time.process_time()
    facts = contender.run(world, spec.settings, spec.seed, probe, work)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if not probe.points:
        raise RuntimeError(f"{spec.key} seed {spec.seed}: the contender never reported to the probe")
    result = {
        "key": spec.key,
        "seed": spec.seed,
        "label": contender.label,
        "family": contender.family,
        "trainer": contender.trainer,
        "notes": contender.notes,
        "omega_prime": omega_prime,
        "alpha_hat": alpha_hat,
        "curve": [point.as_dict() for point in probe.points],
        "train_seconds": probe.points[-1].seconds,
        "wall_seconds_with_evaluation": wall,
        "cpu_seconds_with_evaluation": cpu,  # this process's CPU time: less sensitive to a busy machine than wall
        "facts": facts,
        "provenance": provenance(f"oracle benchmark worker: {spec.key} seed {spec.seed}"),
    }
    write_json_atomic(path, result)
    shutil.rmtree(work, ignore_errors=True)
    return str(path)


def run_benchmark(
    keys: list[str],
    seeds: list[int],
    settings: BenchmarkSettings,
    world: ToyWorld,
    runs_dir: str | Path,
    jobs: int = 1,
    progress: bool = True,
) -> Path:
    """Run every (key, seed) without a cached result, ``jobs`` at a time, each in a fresh spawned process.

    Returns the run folder. A failed run does not stop the others; they all finish (and are cached), then
    one RuntimeError names every failure.
    """
    folder = run_folder(runs_dir, settings, world)
    specs = [
        RunSpec(key, seed, settings, str(world.directory), str(result_path(folder, key, seed)))
        for key in keys
        for seed in seeds
    ]
    todo = [spec for spec in specs if not Path(spec.path).exists()]
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")  # no forked torch / tokenizer state
    with _progress(progress, len(specs), len(specs) - len(todo)) as advance:
        # max_tasks_per_child=1: every run gets its own process (no state leaks from one trainer to the next)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
            futures = {pool.submit(run_one, spec): spec for spec in todo}
            for future in as_completed(futures):
                spec = futures[future]
                error = future.exception()
                if error is not None:
                    failures.append(f"{spec.key} seed {spec.seed}: {type(error).__name__}: {error}")
                advance(f"{spec.key} seed {spec.seed}" + (" FAILED" if error else ""))
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return folder


class _progress:
    """A rich progress bar over runs (cached ones count as done), or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("[bold]oracle benchmark"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Progress(*columns, TextColumn("{task.description}"))
            self.bar.start()
            self.task = self.bar.add_task("cached" if self.done else "", total=self.total, completed=self.done)
        return self._advance

    def _advance(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"last: {description}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def load_results(folder: str | Path, keys: list[str], seeds: list[int]) -> tuple[list[dict], list[str]]:
    """(the cached results of ``keys`` × ``seeds`` under ``folder``, the ``key seed`` of each missing one)."""
    found, missing = [], []
    for key in keys:
        for seed in seeds:
            path = result_path(Path(folder), key, seed)
            if path.exists():
                found.append(json.loads(path.read_text()))
            else:
                missing.append(f"{key} seed {seed}")
    return found, missing
