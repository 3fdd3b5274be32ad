"""Results files of the toy-world jobs: provenance, tables (markdown and terminal), atomic writes.

The PPO and DPO toy jobs each write ``<name>.md`` and ``<name>.json`` that README quotes; both carry
how they were made (command, commit, machine, versions, time).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["provenance", "format_cell", "markdown_table", "print_table", "write_result_files"]

Columns = list[tuple[str, str]]  # (row key, heading)


def provenance(command: list[str], extra: dict | None = None) -> dict:
    """Command, commit, machine and time of a run, for every results file."""

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        except Exception:
            return None

    facts = {
        "command": " ".join(command),
        "commit": git("rev-parse", "HEAD"),
        "working_tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": f"{platform.node()} / {platform.platform()} / {platform.processor() or platform.machine()} / {os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch
        import transformers

        facts["torch"] = torch.__version__
        facts["transformers"] = transformers.__version__
        facts["accelerator"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
    except ImportError:
        pass
    facts.update(extra or {})
    return facts


def format_cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict], columns: Columns) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def print_table(rows: list[dict], columns: Columns, title: str, text_keys: tuple[str, ...] = ("method",), width: int = 130) -> None:
    """A rich table on the terminal; ``text_keys`` columns are left-aligned, numbers right-aligned."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key, heading in columns:
        table.add_column(heading, justify="left" if key in text_keys else "right")
    for row in rows:
        table.add_row(*(format_cell(row.get(key)) for key, _ in columns))
    Console(width=max(Console().width, width)).print(table)  # wide tables stay legible in logs


def write_result_files(results_dir: str | Path, name: str, markdown: str, payload: dict) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` under ``results_dir``, each atomically (temp file + rename)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = results_dir / f"{name}.md", results_dir / f"{name}.json"
    for path, text in ((json_path, json.dumps(payload, indent=1, default=str)), (md_path, markdown)):
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(text)
        temporary.replace(path)
    return md_path, json_path
