"""How far a multi-session sweep has come, from its result JSONs alone: ``results/mujoco/<scale>/progress.md``.

    python -m rpg_control.reproduce.progress                 # write results/mujoco/paper/progress.md
    python -m rpg_control.reproduce.progress --check         # exit 1 if the page is stale

Paper scale only (its runs record ``provenance.training``). One row per (env, variant) that stage 1 plans or
that has a finished run: seeds finished, training wall-hours (the recorded wall time of every process that
trained a run, resumed segments included; one torch thread per run, so at most one core each — on a shared
machine wall time overstates CPU time, and the time a killed process spent past its last checkpoint is not
recorded) and env steps per second of training (median over the runs, with the range). README quotes
the table (tools/sync_docs.py), so the count of finished runs there cannot drift from the files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from rpg.utils.atomic import write_text_atomic
from rpg_control.reproduce.plan import PRIOR_EVALUATION, SCALES
from rpg_control.reproduce.store import REPO_ROOT, read_json

SCALE = "paper"  # the only scale whose runs record provenance.training
RESULTS_DIR = REPO_ROOT / "results" / "mujoco" / SCALE

# Issue #11's stage 1 at the paper's scale: Table I's Soft PPO on the three envs (also Table II's priors) and
# Table II on HalfCheetah (Greedy, KL, Residual from the prior; Full Policy from scratch), 5 seeds each.
STAGE_1 = {
    "halfcheetah": ("soft", "greedy", "kl", "residual", "full"),
    "hopper": ("soft",),
    "ant": ("soft",),
}


def finished_runs(results_dir: Path, with_prior: bool = False) -> list[dict]:
    """Every training run's result under ``results_dir/run_results``; the prior's evaluation (not a training
    run) only ``with_prior``."""
    runs = []
    for path in sorted((results_dir / "run_results").rglob("*.json")):
        result = read_json(path)
        if result is not None and (with_prior or result["spec"]["variant"] != PRIOR_EVALUATION):
            runs.append(result)
    return runs


def cell_of_spec(spec: dict) -> tuple[str, str]:
    """(env, column) of a run: its variant, Table III's state-dependent-std runs apart (as in their run ids)."""
    return spec["env"], spec["variant"] + ("-state-std" if spec.get("state_std") else "")


def _check_one_configuration(env: str, column: str, runs: list[dict]) -> None:
    """A cell is one run configuration: two configs (priors, step or episode counts) must not be pooled."""
    keys = ("config_sha", "prior_sha", "steps", "episodes", "state_std")
    configs = {tuple(run["spec"].get(key) for key in keys) for run in runs}
    if len(configs) > 1:
        raise ValueError(f"{env}/{column}: runs of {len(configs)} configurations {sorted(map(str, configs))}")


def runs_by_cell(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(env, column) -> its finished results, each cell checked to be one run configuration."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        cells.setdefault(cell_of_spec(run["spec"]), []).append(run)
    for (env, column), cell in cells.items():
        _check_one_configuration(env, column, cell)
    return cells


def write_or_check(page: Path, text: str, module: str, check: bool) -> int:
    """Write ``page`` (a generated results page), or with ``check`` only report whether it is stale (exit 1)."""
    if check:
        if (page.read_text() if page.exists() else "") != text:
            print(f"{page.relative_to(REPO_ROOT)} is stale: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    write_text_atomic(page, text)
    print(f"wrote {page.relative_to(REPO_ROOT)}")
    return 0


def _cell_row(env: str, variant: str, runs: list[dict], seeds: int) -> dict:
    trainings = [run["provenance"]["training"] for run in runs]
    rates = sorted(t["steps_per_second"] for t in trainings if t.get("steps_per_second"))
    return {
        "env": env,
        "variant": variant,
        "done": len(runs),
        "planned": seeds,
        "seeds": sorted(run["spec"]["seed"] for run in runs),
        "wall_hours": sum(t["wall_time_s"] for t in trainings) / 3600,
        "rates": rates,
    }


def progress_rows(runs: list[dict], seeds: int, stage: dict[str, tuple[str, ...]] = STAGE_1) -> list[dict]:
    """One row per (env, variant) of ``stage`` or with a finished run, stage cells first, in stage order."""
    by_cell = runs_by_cell(runs)
    cells = [(env, variant) for env, variants in stage.items() for variant in variants]
    cells += sorted(cell for cell in by_cell if cell not in cells)
    return [_cell_row(env, variant, by_cell.get((env, variant), []), seeds) for env, variant in cells]


def _rate_text(rates: list[float]) -> str:
    if not rates:
        return "—"
    median = f"{statistics.median(rates):,.0f}"
    return median if len(rates) == 1 else f"{median} ({rates[0]:,.0f}–{rates[-1]:,.0f})"


def progress_markdown(rows: list[dict], scale_name: str, stage: dict[str, tuple[str, ...]] = STAGE_1) -> str:
    staged = [row for row in rows if row["variant"] in stage.get(row["env"], ())]
    done = sum(min(row["done"], row["planned"]) for row in staged)
    planned = sum(row["planned"] for row in staged)
    hours = sum(row["wall_hours"] for row in staged)
    lines = [
        f"# Progress of the `{scale_name}`-scale sweep",
        "",
        "Written by `python -m rpg_control.reproduce.progress` from the result JSONs beside this file. Wall-hours: "
        "the recorded wall time of every process that trained a run (one torch thread each, so at most one core), "
        "resumed segments included; on a shared machine wall time overstates CPU time. Env steps/s: training steps "
        "over that time, median over the runs (range), on the machines the JSONs name. The last row counts the "
        "stage's cells only.",
        "",
        "| env | variant | seeds finished | training wall-hours | env steps/s (median, range) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = ", ".join(map(str, row["seeds"])) or "none"
        lines.append(
            f"| {row['env']} | {row['variant']} | {row['done']}/{row['planned']} ({seeds}) | "
            f"{row['wall_hours']:.2f} | {_rate_text(row['rates'])} |"
        )
    lines.append(f"| **stage 1** | | **{done}/{planned}** | **{hours:.2f}** | |")
    return "\n".join(lines) + "\n"


def render(results_dir: Path) -> str:
    rows = progress_rows(finished_runs(results_dir), SCALES[SCALE].seeds)
    return progress_markdown(rows, SCALE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if progress.md is stale")
    args = parser.parse_args(argv)
    text = render(RESULTS_DIR)
    return write_or_check(RESULTS_DIR / "progress.md", text, "rpg_control.reproduce.progress", args.check)


if __name__ == "__main__":
    sys.exit(main())
