"""Bring a sweep worktree's finished paper-scale runs into this checkout and re-render every stage-1 page.

    python -m rpg_control.reproduce.collect --from ../sweep            # copy new results, then re-render
    python -m rpg_control.reproduce.collect --from ../sweep --no-render

The sweep runs from its own worktree at a fixed commit (docs/mujoco_reproduction.md); its finished runs land
in that worktree's ``results/mujoco/paper/``. This copies every result JSON and prior there that this checkout
lacks — never overwriting one it has: a file that differs is refused, naming it, before anything is copied —
then renders Tables I and II (``--report-only``), the claims page, the progress and summary pages and README's quoted
tables, the steps a session takes before committing a finished run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rpg.utils.atomic import atomic_write
from rpg_control.reproduce.store import REPO_ROOT

RESULTS = Path("results") / "mujoco" / "paper"
COLLECTED = ("run_results", "priors")  # what a sweep writes that a commit keeps (not run folders)
STAGE_1_RENDERS = (  # the argv of `rpg control reproduce` for each stage-1 table
    "--table 2 --envs halfcheetah --scale paper --report-only".split(),
    "--table 1 --variants soft --envs halfcheetah hopper ant --scale paper --report-only".split(),
)


def _result_files(root: Path) -> dict[Path, Path]:
    """Relative path -> absolute path of every result file a sweep under ``root`` has written."""
    files = {}
    for folder in COLLECTED:
        base = root / RESULTS / folder
        if base.is_dir():
            files.update({path.relative_to(root): path for path in base.rglob("*") if path.is_file()})
    return files


def collect(sweep_root: Path, here: Path = REPO_ROOT) -> list[Path]:
    """Copy the sweep's result files this checkout lacks; returns their relative paths (sorted).

    Raises ValueError naming every file both have with different contents, before copying anything.
    """
    theirs = _result_files(sweep_root)
    differing = sorted(
        str(rel)
        for rel, path in theirs.items()
        if (here / rel).exists() and (here / rel).read_bytes() != path.read_bytes()
    )
    if differing:
        raise ValueError(
            f"{len(differing)} file(s) differ between {sweep_root} and this checkout: {', '.join(differing)}"
        )
    new = sorted(rel for rel in theirs if not (here / rel).exists())
    for rel in new:
        data = theirs[rel].read_bytes()
        atomic_write(here / rel, lambda handle, data=data: handle.write(data))
    return new


def render_stage_1() -> None:
    """Tables I and II from the results alone, then the pages that quote them."""
    from rpg_control.reproduce import claims_page, progress, summary
    from rpg_control.reproduce.cli import main as reproduce

    for argv in STAGE_1_RENDERS:
        if reproduce(argv) != 0:
            raise RuntimeError(f"rendering failed: rpg control reproduce {' '.join(argv)}")
    claims_page.main([])
    progress.main([])
    summary.main([])
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "sync_docs.py")], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rpg_control.reproduce.collect", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--from", dest="sweep", required=True, help="the sweep worktree's root (e.g. ../sweep)")
    parser.add_argument("--no-render", action="store_true", help="copy only")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep).resolve()
    if not (sweep / RESULTS).is_dir():
        parser.error(f"--from {args.sweep}: no {RESULTS} there (not a sweep worktree?)")
    try:
        new = collect(sweep)
    except ValueError as error:
        parser.error(str(error))
    for rel in new:
        print(f"collected {rel}")
    if not new:
        print("nothing new to collect")
    elif not args.no_render:
        render_stage_1()
    return 0


if __name__ == "__main__":
    sys.exit(main())
