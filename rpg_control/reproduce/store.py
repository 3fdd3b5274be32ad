"""Crash-safe files and provenance for the reproduction.

A finished run is exactly one result JSON, written with :mod:`rpg.utils.atomic` (temporary file,
fsync, ``os.replace``), so a reader sees either no file or the whole file: a sweep killed at any
instant never leaves half a result.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rpg.utils.atomic import copy_atomic, write_bytes_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]


def copy_checkpoint_slim(source: Path, target: Path, drop: tuple[str, ...] = ("optimizer", "rng")) -> None:
    """Copy a torch checkpoint without its training-only state (optimizer moments, RNG), so the prior
    a table needs is small enough to commit; a file that is no dict checkpoint is copied as is."""
    try:
        import torch

        payload = torch.load(source, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file (e.g. a test's fake checkpoint)
        copy_atomic(source, target)
        return
    if isinstance(payload, dict):
        for key in drop:
            payload.pop(key, None)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(target, buffer.getvalue())


def read_json(path: Path) -> Any | None:
    """The JSON at ``path``, or None when there is none yet."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def git_commit() -> str:
    """HEAD of the repository, with '-dirty' when files under rpg/ or rpg_control/ differ from it
    (untracked ones included: a trainer not yet committed is not the commit's trainer)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "rpg", "rpg_control"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_fingerprint() -> str:
    """sha256 of the code and configs a run executes (rpg/, rpg_control/: *.py, *.yaml), so a result
    can be matched to the exact sources even when they were not committed yet."""
    digest = hashlib.sha256()
    for package in ("rpg", "rpg_control"):
        for path in sorted((REPO_ROOT / package).rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return info


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
