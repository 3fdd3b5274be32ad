"""Crash-safe files and provenance for the reproduction.

A finished run is exactly one result JSON, written with :mod:`rpg.utils.atomic` (temporary file,
fsync, ``os.replace``), so a reader sees either no file or the whole file: a sweep killed at any
instant never leaves half a result.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from rpg.utils.atomic import write_bytes_atomic
from rpg.utils.provenance import utc_now  # noqa: F401 - re-exported for the pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]


def slim_checkpoint_bytes(source: Path, drop: tuple[str, ...] = ("optimizer", "rng")) -> bytes:
    """A torch checkpoint without its training-only state (optimizer moments, RNG), as bytes: small
    enough to commit as a prior or to return from a remote task; a file that is no dict checkpoint
    (a test's fake) is returned as is."""
    try:
        import torch

        payload = torch.load(source, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file (e.g. a test's fake checkpoint)
        return Path(source).read_bytes()
    if isinstance(payload, dict):
        for key in drop:
            payload.pop(key, None)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def copy_checkpoint_slim(source: Path, target: Path) -> None:
    """Copy ``source`` without its training-only state (see :func:`slim_checkpoint_bytes`), atomically."""
    write_bytes_atomic(target, slim_checkpoint_bytes(source))


def read_json(path: Path) -> Any | None:
    """The JSON at ``path``, or None when there is none yet."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def source_fingerprint() -> str:
    """sha256 of the code and configs a run executes (rpg/, rpg_control/: *.py, *.yaml), so a result
    can be matched to the exact sources even when they were not committed yet."""
    digest = hashlib.sha256()
    for package in ("rpg", "rpg_control"):
        for path in sorted((REPO_ROOT / package).rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def training_provenance(sessions: list[dict]) -> dict:
    """The training block of a result: each session that trained the run (start/end step, commit,
    dirty flag, machine, wall time; see ``rpg_control.train``), and their totals."""
    steps = sum((s.get("end_step") or 0) - (s.get("start_step") or 0) for s in sessions)
    seconds = sum(s.get("wall_seconds") or 0.0 for s in sessions)
    commits = []
    for session in sessions:
        facts = session.get("provenance") or {}
        commits.append(_commit_text(facts.get("commit"), facts.get("code_dirty")))
    return {
        "commits": sorted(set(commits)),
        "wall_time_s": round(seconds, 2),
        "steps_per_second": round(steps / seconds, 1) if seconds > 0 else None,
        "sessions": sessions,
    }


def _commit_text(commit: str | None, dirty: bool | None) -> str:
    return "unknown" if not commit else commit + ("-dirty" if dirty else "")


def result_commits(result: dict) -> list[str]:
    """Commit(s) that trained a result, ``<sha>[-dirty]``: new results hold one per training session in
    ``provenance.training``; older ones a single ``commit`` string (already ``-dirty`` when it was)."""
    training = (result.get("provenance") or {}).get("training")
    if training is not None and training.get("commits"):
        return list(training["commits"])
    if result.get("commit"):
        return [result["commit"]]
    evaluation = (result.get("provenance") or {}).get("evaluation") or {}
    return [_commit_text(evaluation.get("commit"), evaluation.get("code_dirty"))]


def result_machine(result: dict) -> str:
    """'host (N CPUs, model)' of the process that made a result (old results: ``machine.cpu_count``)."""
    machine = ((result.get("provenance") or {}).get("evaluation") or {}).get("machine") or result.get("machine") or {}
    cpus = machine.get("cpus", machine.get("cpu_count"))
    model = f", {machine['cpu']}" if machine.get("cpu") else ""
    return f"{machine.get('host', 'unknown')} ({cpus} CPUs{model})"
