"""Run independent jobs ``--jobs`` at a time, skip finished ones, survive being killed.

The driver is the only writer of result JSONs: a worker (in-process, a local process, or a Ray
task) trains and evaluates and returns a dict; the driver adds provenance and writes the result
atomically. A run whose result exists is skipped; a run directory without a result is handed to
the runner again, which resumes from the run's last checkpoint (the trainer's own resume).
"""

from __future__ import annotations

import hashlib
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

from rpg.utils.atomic import write_bytes_atomic, write_json_atomic
from rpg.utils.provenance import provenance, utc_now
from rpg_control.reproduce.plan import RunSpec
from rpg_control.reproduce.store import read_json, source_fingerprint, training_provenance
from rpg_control.run_lock import run_lock

DEFAULT_RUNNER = "rpg_control.reproduce.runner:train_and_evaluate"
BACKENDS = ("local", "ray")


def resolve_runner(reference: str) -> Callable[..., dict]:
    """``"package.module:function"`` -> the function (a reference, so it can cross process boundaries)."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"runner must look like 'package.module:function', got {reference!r}")
    return getattr(importlib.import_module(module_name), function_name)


def execute_run(runner: str, spec: dict, run_dir: str, progress: bool, prior_blob: bytes | None = None) -> dict:
    """Worker side of one run: call the runner and time it. Runs in any process or Ray worker.

    ``run_dir`` is explicit (planned by the driver; ``~`` is expanded here, on the worker). A Ray task
    gets the prior checkpoint by value (``prior_blob``): it is written into the run folder and used
    from there, so a worker never reads a driver path.
    """
    run_spec = RunSpec.from_dict(spec)
    run_dir = str(Path(run_dir).expanduser())
    if prior_blob is not None and run_spec.prior:
        if hashlib.sha256(prior_blob).hexdigest() != run_spec.prior_sha:
            raise ValueError(f"the prior shipped for {run_spec.run_id} does not match its sha256 {run_spec.prior_sha}")
        local_prior = Path(run_dir) / "prior.pt"
        if not local_prior.exists():
            write_bytes_atomic(local_prior, prior_blob)
        run_spec = replace(run_spec, prior=str(local_prior))
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
    # Ray only: the run folders' root on the workers ("~" expands on each worker). Each worker keeps its
    # own folders (checkpoints, metrics.jsonl); only what a task returns reaches the driver.
    worker_runs_dir: str = "~/rpg-runs"
    progress: bool = True
    command: str = ""
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        # Absolute from here on: tasks and later reads never depend on the current directory.
        self.results_dir, self.runs_dir = Path(self.results_dir).resolve(), Path(self.runs_dir).resolve()

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

    def returned_best(self, spec: RunSpec) -> Path:
        """Where the driver keeps the best checkpoint a task returned (its bytes, not a worker path)."""
        return self.runs_dir / spec.run_id / "returned" / "best.pt"

    def load(self, spec: RunSpec) -> dict | None:
        """The finished result of ``spec``, or None when it has not finished."""
        return read_json(self.result_path(spec))

    def load_for_report(self, spec: RunSpec) -> dict | None:
        """``load``, or else the one result of the same run (env, variant, prior, steps, episodes, seed) made
        with another trainer config, marked ``matched_config``: tables keep showing committed runs after a
        default changed (e.g. the checkpoint spacing), and say so. A sweep still trains the new runs."""
        result = self.load(spec)
        if result is not None or not spec.config_sha:
            return result
        marker = f"cfg-{spec.config_sha[:10]}"
        pattern = spec.run_id.replace(marker, "cfg-*") + ".json"
        found = sorted(self.results_dir.glob(pattern))
        if len(found) != 1:
            return None
        result = read_json(found[0])
        result["matched_config"] = str(found[0].relative_to(self.results_dir))[: -len(".json")]
        return result

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

    def _arguments(self, spec: RunSpec, remote: bool = False) -> tuple:
        """A task's arguments, every path explicit: local tasks use the driver's (absolute) run folder
        and prior; a Ray task gets its folder under ``worker_runs_dir`` and the prior's bytes."""
        prior_blob = Path(spec.prior).read_bytes() if remote and spec.prior else None
        run_dir = f"{self.worker_runs_dir}/{spec.run_id}" if remote else str(self.run_dir(spec))
        return (self.runner, spec.to_dict(), run_dir, self.progress and self.jobs == 1, prior_blob)

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
        with ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=context, initializer=_share_cores, initargs=(threads,)
        ) as pool:
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
            # The job's runtime_env ships this checkout's code to every worker (Ray uploads a local
            # working_dir only at job level); a Ray the caller initialized keeps the caller's.
            ray.init(
                address=address,
                num_cpus=None if address else self.jobs,
                log_to_driver=False,
                runtime_env=ray_runtime_env(),
            )
        remote_run = ray.remote(num_cpus=1, max_retries=1)(execute_run)
        references = {remote_run.remote(*self._arguments(spec, remote=True)): spec for spec in pending}
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
        checkpoints = dict(payload.get("checkpoints", {}))
        best_bytes = payload.pop("best_checkpoint", None)
        if best_bytes is not None:  # Table II's prior may be picked from it: keep it on the driver
            write_bytes_atomic(self.returned_best(spec), best_bytes)
            checkpoints["best_returned"] = str(self.returned_best(spec))
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
            "checkpoints": checkpoints,
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
                "evaluation": {
                    **worker,
                    "wall_time_s": payload.get("evaluation_seconds"),
                    "utc": outcome["finished_at"],
                },
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


# What a Ray task needs on a fresh cluster: this checkout's code (uploaded by Ray as the working
# directory, without results, run folders or git history) and one torch thread per run. The Python
# packages themselves (torch, mujoco, gymnasium, ...) must be installed on every node (see
# docs/mujoco_reproduction.md).
RAY_EXCLUDES = [".git", "results", "runs", "outputs", "benchmarks/results", "**/__pycache__", "*.pt", "*.egg-info"]


def ray_runtime_env() -> dict:
    from rpg_control.reproduce.store import REPO_ROOT

    return {"working_dir": str(REPO_ROOT), "excludes": list(RAY_EXCLUDES), "env_vars": {"OMP_NUM_THREADS": "1"}}


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--backend ray needs Ray: pip install 'rpg[distributed]'") from error
    return ray
