"""The docs stand alone and cannot drift: no reference outside the repository, every relative link
resolves, and every quoted results table equals its source (tools/sync_docs.py)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [
    p
    for d in ("rpg", "rpg_llm", "rpg_control", "recipes", "benchmarks", "tests", "tools")
    for p in (ROOT / d).rglob("*.py")
]


def test_quoted_tables_equal_their_results_files():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_docs.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = path.read_text()
    targets = re.findall(r"\]\((?!https?://|#|mailto:)([^)\s#]+)", text)
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert missing == [], f"{path.name} links to missing files: {missing}"


def test_nothing_cites_a_document_outside_the_repository():
    cite = re.compile(r"SPEC\s*§|SPEC\.md|\.\./shared")
    offenders = [
        str(p.relative_to(ROOT)) for p in [*DOCS, *SOURCES] if p.name != "test_docs.py" and cite.search(p.read_text())
    ]
    assert offenders == []
