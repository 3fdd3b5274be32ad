"""Provenance of a result: command line, git commit (and whether the code was modified), machine, versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def provenance() -> dict:
    """Who made a result: the command line, the git commit of this checkout, the machine, versions."""
    import os
    import platform
    import subprocess
    import sys
    from datetime import datetime, timezone

    import mujoco

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "rpg", "rpg_control"], capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", None
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "command": " ".join(["rpg", *sys.argv[1:]]) if Path(sys.argv[0]).name == "rpg" else " ".join(sys.argv),
        "commit": commit,
        "code_dirty": dirty,
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "mujoco": mujoco.__version__, "numpy": np.__version__},
    }
