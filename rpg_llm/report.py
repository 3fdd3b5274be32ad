"""Results files of the toy-world jobs: tables (markdown and terminal) with provenance, written atomically.

The PPO and DPO toy jobs each write ``<name>.md`` and ``<name>.json`` that README quotes; both carry
how they were made (command, commit, machine, versions, time).
"""

from __future__ import annotations

import json
from pathlib import Path

from rpg.utils.atomic import write_text_atomic
from rpg.utils.provenance import provenance

__all__ = ["provenance", "format_cell", "markdown_table", "print_table", "write_result_files"]

Columns = list[tuple[str, str]]  # (row key, heading)


def format_cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict], columns: Columns) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def print_table(
    rows: list[dict], columns: Columns, title: str, text_keys: tuple[str, ...] = ("method",), width: int = 130
) -> None:
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
    write_text_atomic(json_path, json.dumps(payload, indent=1, default=str))
    write_text_atomic(md_path, markdown)
    return md_path, json_path
