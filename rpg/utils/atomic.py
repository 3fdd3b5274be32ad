"""Crash-safe file writes: checkpoints, metrics logs, result JSONs and tables.

Each write goes to a temporary file in the target's folder, is flushed to disk and renamed over the
target with ``os.replace`` (atomic on POSIX): a reader sees the old file or the whole new one, never
half of one, whenever the process is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "write_json_atomic", "write_text_atomic", "write_bytes_atomic", "copy_atomic"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(handle)`` on a temporary binary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, payload: Any) -> None:
    data = (json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n").encode()
    atomic_write(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def copy_atomic(source: str | Path, target: str | Path) -> None:
    def write(handle):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle)

    atomic_write(target, write)
