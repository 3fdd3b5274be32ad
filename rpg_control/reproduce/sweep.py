"""Run independent jobs ``--jobs`` at a time, skip finished ones, survive being killed.

The driver is the only writer of result JSONs: a worker (in-process, a local process, or a Ray
task) trains and evaluates and returns a dict; the driver adds provenance and writes the result
atomically. A run whose result exists is skipped; a run directory without a result is handed to
the runner again, which resumes from the run's last checkpoint (the trainer's own resume).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from rpg_control.reproduce.plan import RunSpec
from rpg_control.run_lock import run_lock
from rpg.utils.atomic import write_bytes_atomic, write_json_atomic
from rpg.utils.provenance import provenance, utc_now
from rpg_control.reproduce.store import read_json, source_fingerprint, training_provenance

DEFAULT_RUNNER = "rpg_control.reproduce.runner:train_and_evaluate"
BACKENDS = ("local", "ray")


def resolve_runner(reference: str) -> Callable[..., dict]:
    """``"package.module:function"`` -> the function (a reference, so it can cross process boundaries)."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"runner must look like 'package.module:function', got {reference!r}")
    return getattr(importlib.import_module(module_name), function_name)


def execute_run(runner: str, spec: dict, run_dir: str, progress: bool, prior_blob: bytes | None = None) -> dict:
    """Worker side of one run: call the runner and time it. Runs in any process or Ray worker."""
    run_spec = RunSpec.from_dict(spec)
    if prior_blob is not None and run_spec.prior and not Path(run_spec.prior).exists():
        # A remote worker without the driver's files receives the prior checkpoint by value.
        write_bytes_atomic(Path(run_spec.prior), prior_blob)
    # The code a run executes is the code at its start (it may change while a sweep goes on).
    worker_provenance, source_sha256 = provenance(), source_fingerprint()
    started_at, start = utc_now(), time.perf_counter()
    with run_lock(run_dir):  # a second sweep over the same run is refused, naming this process
        payload = resolve_runner(runner)(run_spec, Path(run_dir), progress=progress)
    return {
        "payload": payload,
        "provenance": worker_provenance,
        "source_sha256": source_sha256,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "started_at": started_at,
        "finished_at": utc_now(),
    }


def _share_cores(threads: int) -> None:
    """Process-pool initializer: ``--jobs`` trainers share the cores instead of each taking all."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


@dataclass
class SweepReport:
    finished: list[RunSpec] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


@dataclass
class Sweep:
    results_dir: Path  # result JSONs: <results_dir>/<run_id>.json (committed)
    runs_dir: Path  # run directories with checkpoints and metrics.jsonl (not committed)
    runner: str = DEFAULT_RUNNER
    jobs: int = 1
    backend: str = "local"
    ray_address: str | None = None
    progress: bool = True
    command: str = ""
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.results_dir, self.runs_dir = Path(self.results_dir), Path(self.runs_dir)

    def identify(self, specs: list[RunSpec]) -> list[RunSpec]:
        """Stamp each spec with its config hash when the runner's module offers ``config_fingerprint``."""
        module_name = self.runner.partition(":")[0]
        fingerprint = getattr(importlib.import_module(module_name), "config_fingerprint", None)
        if fingerprint is None:
            return list(specs)
        return [replace(spec, config_sha=fingerprint(spec)) for spec in specs]

    def result_path(self, spec: RunSpec) -> Path:
        return self.results_dir / f"{spec.run_id}.json"

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.run_id

    def load(self, spec: RunSpec) -> dict | None:
        """The finished result of ``spec``, or None when it has not finished."""
        return read_json(self.result_path(spec))

    # -- running -----------------------------------------------------------------------------
    def run(self, specs: list[RunSpec]) -> SweepReport:
        report = SweepReport()
        pending = []
        for spec in {spec.run_id: spec for spec in specs}.values():
            if self.result_path(spec).exists():
                report.skipped.append(spec)
            else:
                pending.append(spec)
        if report.skipped:
            self.log(f"reproduce: {len(report.skipped)} run(s) already finished, skipped")
        if not pending:
            return report
        self.log(f"reproduce: {len(pending)} run(s) to go, {self.jobs} at a time ({self.backend})")
        if self.backend == "ray":
            self._run_ray(pending, report)
        elif self.jobs == 1:
            self._run_inline(pending, report)
        else:
            self._run_processes(pending, report)
        return report

    def _arguments(self, spec: RunSpec, ship_prior: bool = False) -> tuple:
        prior_blob = Path(spec.prior).read_bytes() if ship_prior and spec.prior else None
        return (self.runner, spec.to_dict(), str(self.run_dir(spec)), self.progress and self.jobs == 1, prior_blob)

    def _run_inline(self, pending: list[RunSpec], report: SweepReport) -> None:
        for index, spec in enumerate(pending, 1):
            self.log(f"reproduce: [{index}/{len(pending)}] {spec.run_id}")
            try:
                outcome = execute_run(*self._arguments(spec))
            except Exception as error:  # one failed run must not stop the others
                self._failed(spec, error, report)
                continue
            self._finish(spec, outcome, report)

    def _run_processes(self, pending: list[RunSpec], report: SweepReport) -> None:
        # spawn, not fork: torch and MuJoCo hold threads and locks that a fork would copy mid-state.
        context = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_share_cores, initargs=(threads,)) as pool:
            futures = {pool.submit(execute_run, *self._arguments(spec)): spec for spec in pending}
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        spec = futures.pop(future)
                        try:
                            self._finish(spec, future.result(), report)
                        except Exception as error:
                            self._failed(spec, error, report)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _run_ray(self, pending: list[RunSpec], report: SweepReport) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            # No address starts a local Ray with --jobs CPUs; "auto" or "ray://head:10001" joins an
            # existing cluster, whose CPUs then set how many runs go at once.
            address = self.ray_address or os.environ.get("RAY_ADDRESS")
            ray.init(address=address, num_cpus=None if address else self.jobs, log_to_driver=False)
        remote_run = ray.remote(num_cpus=1, max_retries=1)(execute_run)
        references = {remote_run.remote(*self._arguments(spec, ship_prior=True)): spec for spec in pending}
        in_flight = list(references)
        while in_flight:
            done, in_flight = ray.wait(in_flight, num_returns=1)
            spec = references[done[0]]
            try:
                self._finish(spec, ray.get(done[0]), report)
            except Exception as error:
                self._failed(spec, error, report)

    # -- bookkeeping -------------------------------------------------------------------------
    def _finish(self, spec: RunSpec, outcome: dict[str, Any], report: SweepReport) -> None:
        payload = outcome["payload"]
        worker = outcome["provenance"]  # the process that trained (if needed) and evaluated this run
        sessions = payload.get("training_sessions") or []
        result = {
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "seed": spec.seed,
            "steps": spec.steps,
            "trained_steps": payload.get("trained_steps"),
            "selection_metric": payload.get("selection_metric"),
            "evaluated_checkpoints": payload.get("evaluated_checkpoints"),
            "eval": payload["eval"],
            "config": payload.get("config"),
            "checkpoints": payload.get("checkpoints", {}),
            "resumed_from_step": payload.get("resumed_from_step"),
            "curve": payload.get("curve", []),
            "wall_time_s": outcome["wall_time_s"],
            "started_at": outcome["started_at"],
            "finished_at": outcome["finished_at"],
            "source_sha256": outcome["source_sha256"],
            "command": self.command,
            # Training and evaluation apart: a run trained in several sessions (killed, resumed), or
            # evaluated again later, keeps the commit, machine and wall time of each step.
            "provenance": {
                "training": training_provenance(sessions),
                "evaluation": {**worker, "wall_time_s": payload.get("evaluation_seconds"),
                               "utc": outcome["finished_at"]},
            },
        }
        write_json_atomic(self.result_path(spec), result)
        report.finished.append(spec)
        self.log(f"reproduce: finished {spec.run_id} in {outcome['wall_time_s']:.0f} s")

    def _failed(self, spec: RunSpec, error: BaseException, report: SweepReport) -> None:
        message = f"{type(error).__name__}: {error}"
        report.failed.append((spec, message))
        self.log(f"reproduce: FAILED {spec.run_id}: {message}")
        if os.environ.get("RPG_REPRODUCE_TRACEBACK"):
            traceback.print_exception(error)


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--backend ray needs Ray: pip install 'rpg[distributed]'") from error
    return ray
