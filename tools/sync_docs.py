"""Keep the tables quoted in README.md and docs/ equal to the results files they come from.

A quoted table sits between two comments naming its source and which table of that file it is:

    <!-- from: results/llm/residual_ppo_toy.md table 1 -->
    | method | ... |
    <!-- /from -->

``python tools/sync_docs.py`` rewrites every such block from its source; ``--check`` only reports
blocks that differ (the test suite runs it, so a regenerated result cannot drift from the docs).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- from: (?P<source>\S+) table (?P<index>\d+) -->\n)(?P<body>.*?)(<!-- /from -->)", re.DOTALL)


def markdown_tables(text: str) -> list[str]:
    """Every table of a markdown text (runs of consecutive lines starting with '|'), in order."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current) + "\n")
            current = []
    if current:
        tables.append("\n".join(current) + "\n")
    return tables


def quoted_table(source: str, index: int) -> str:
    path = ROOT / source
    if not path.is_file():
        raise SystemExit(f"sync_docs: error: quoted source {source} does not exist")
    tables = markdown_tables(path.read_text())
    if not 1 <= index <= len(tables):
        raise SystemExit(f"sync_docs: error: {source} has {len(tables)} tables, not table {index}")
    return tables[index - 1]


def sync(path: Path) -> tuple[str, list[str]]:
    """The file's text with every block rewritten, and the sources whose blocks changed."""
    changed: list[str] = []

    def rewrite(match: re.Match) -> str:
        table = quoted_table(match["source"], int(match["index"]))
        if table != match["body"]:
            changed.append(f"{match['source']} table {match['index']}")
        return match.group(1) + table + match.group(5)

    return BLOCK.sub(rewrite, path.read_text()), changed


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drifted blocks, change nothing")
    args = parser.parse_args(argv)
    drifted = []
    for path in documents():
        text, changed = sync(path)
        if changed and not args.check:
            path.write_text(text)
        drifted += [f"{path.relative_to(ROOT)}: {source}" for source in changed]
    for line in drifted:
        print(("drifted: " if args.check else "rewrote: ") + line)
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    sys.exit(main())
