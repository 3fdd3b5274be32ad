"""One writer per run folder: an exclusive ``fcntl.flock`` on ``<run_dir>/.lock``.

Two sweeps (or a sweep and a manual ``rpg control train``) pointed at the same run folder would
otherwise both train into it and overwrite each other's checkpoints. The lock belongs to an open
file description, so the kernel drops it when the holding process dies, however it dies (SIGKILL
included): a killed run never leaves a stuck lock. The holder writes its pid, host and start time
into the file, only so that the refusal can say who holds it.

Within one process the lock is re-entrant (the sweep's worker takes it around train + evaluate,
and ``train`` takes it again), because a second ``flock`` on a new descriptor of the same file
would block its own holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path

from rpg.utils.provenance import utc_now
from rpg_control.config import ConfigError

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # lock file -> nesting depth, in this process


class RunLockedError(ConfigError):
    """The run folder is being written by another live process."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (no pid recorded yet)"
    return f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('since')})"


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block; raise :class:`RunLockedError` (one line) if taken."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / LOCK_NAME).resolve()
    if path in _held:
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run folder {run_dir} is in use by {_holder(path)}; "
                "wait for that run or stop it (its lock goes with its process)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": platform.node(), "since": utc_now()}).encode(), 0)
        _held[path] = 1
        try:
            yield path
        finally:
            del _held[path]
            os.ftruncate(fd, 0)  # the holder's record goes with the lock (the file stays: unlinking races)
    finally:
        os.close(fd)  # releases the flock
