"""Provenance of a result: how it was made (command, commit, machine, versions, time).

One implementation for every results file of the project (LLM toy jobs, MuJoCo runs and tables,
benchmarks), with one key per fact:

- ``commit``: HEAD of the checkout the code ran from (``None`` outside a git checkout);
- ``code_dirty``: whether the project's packages (``rpg/``, ``rpg_llm/``, ``rpg_control/``) differ
  from that commit, untracked files included (a trainer not yet committed is not the commit's trainer);
- ``machine``: host, platform, CPU model, core count, torch threads, accelerator;
- ``versions``: python and the installed versions of the libraries the result depends on;
- ``utc``: when the result was written (informational: never compare it in a test).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "PACKAGES",
    "git_state",
    "cpu_model",
    "machine",
    "versions",
    "provenance",
    "utc_now",
    "command_line",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rpg", "rpg_llm", "rpg_control")
# Distributions a result may depend on; those not installed are left out.
TRACKED_DISTRIBUTIONS = (
    "torch",
    "numpy",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "gymnasium",
    "mujoco",
    "envpool",
    "ray",
    "stable-baselines3",
)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """``{"commit": HEAD or None, "code_dirty": bool or None}`` for the given package folders."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "code_dirty": None}
    status = _git("status", "--porcelain", "--", *packages)
    return {"commit": commit, "code_dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _accelerator() -> str:
    try:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
    except Exception:  # noqa: BLE001 - provenance must never fail a run
        return "unknown"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "accelerator": _accelerator(),
    }
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def versions(distributions: tuple[str, ...] = TRACKED_DISTRIBUTIONS) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user typed it: ``rpg …`` for the console script, else ``python argv…``."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name == "rpg":
        argv[0] = "rpg"
    return " ".join(argv)


def provenance(command: list[str] | str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """Command, commit, dirty flag, machine, versions and time of a result (see module docstring)."""
    if command is None or isinstance(command, list):
        command = command_line(command)
    facts: dict[str, Any] = {"command": command, **git_state(), "machine": machine(), "versions": versions()}
    facts["utc"] = utc_now()
    facts.update(extra or {})
    return facts
