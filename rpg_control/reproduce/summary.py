"""Stage 1's headline figures at the paper's scale, from the result JSONs alone: ``results/mujoco/paper/summary.md``.

    python -m rpg_control.reproduce.summary                 # write results/mujoco/paper/summary.md
    python -m rpg_control.reproduce.summary --check         # exit 1 if the page is stale

Two tables, which README quotes (tools/sync_docs.py), so its headline cannot drift from the runs:

1. Table I's Soft PPO column per env (basic reward, mean action): every seed's last checkpoint with the
   episodes pooled (the paper's "average"), the spread of the seeds' means, the best seed's best checkpoint
   (the paper's "best", which is also Table II's prior), and the paper's two figures.
2. Table II's claims for every env with customization runs: the seeds' mean difference d against Welch's
   95% t·se (``verdicts``), at the best and the last checkpoints, with mean and with sampled actions.

The full tables, every column and both evaluation modes, are ``table1*.md`` and ``table2*.md`` beside it.
"""

from __future__ import annotations

import argparse
import sys

from rpg.utils.atomic import write_text_atomic
from rpg_control.reproduce import paper, tables, verdicts
from rpg_control.reproduce.plan import CUSTOMIZATION_VARIANTS
from rpg_control.reproduce.progress import check_one_configuration, finished_runs
from rpg_control.reproduce.store import REPO_ROOT

SCALE = "paper"
MODES = {"deterministic": "mean action", "stochastic": "sampled actions"}


def runs_by_cell(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(env, variant) -> its finished results, each cell checked to be one run configuration."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        cells.setdefault((run["spec"]["env"], run["spec"]["variant"]), []).append(run)
    for (env, variant), cell in cells.items():
        check_one_configuration(env, variant, cell)
    return cells


def _soft_row(env: str, runs: list[dict]) -> str:
    title = paper.ENV_TITLES[env]
    average, best = (tables.fmt(paper.TABLE1[kind][env]["soft"]) for kind in ("average", "best"))
    if not runs:
        return f"| {title} | 0 | — | — | — | {average} | {best} |"
    last = tables.pooled_figures(runs)["last"]["basic"]
    means = sorted(run["eval"]["last"]["basic"]["mean"] for run in runs)
    figure, result = tables.best_seed_of(runs, "deterministic", "basic")
    step = ((result.get("evaluated_checkpoints") or {}).get("best") or {}).get("checkpoint_step")
    where = f"seed {result['seed']}" + (f", step {step:,}" if step is not None else "")
    return (
        f"| {title} | {len(runs)} | {tables.fmt(last)} | {means[0]:.1f} – {means[-1]:.1f} | "
        f"{tables.fmt(figure)} ({where}) | {average} | {best} |"
    )


def soft_table(cells: dict[tuple[str, str], list[dict]]) -> list[str]:
    return [
        "| env | seeds | ours: last checkpoints, episodes pooled | seeds' means (min – max) | ours: best seed's "
        "best checkpoint | paper: average | paper: best |",
        "|---|---|---|---|---|---|---|",
        *(_soft_row(env, cells.get((env, "soft"), [])) for env in paper.ENVS),
    ]


def _comparison_cells(residual: list[dict], other: list[dict], checkpoint: str, quantity: str) -> list[str]:
    out = []
    for mode in MODES:
        comparison = verdicts.compare(
            tables.cell_of(residual, checkpoint, quantity, mode), tables.cell_of(other, checkpoint, quantity, mode)
        )
        if comparison is None:
            out += ["—", verdicts.MISSING]
        elif comparison.threshold is None:
            out += [f"{comparison.difference:+.1f} (one seed)", verdicts.bold(comparison.verdict)]
        else:
            out += [f"{comparison.difference:+.1f} ({comparison.threshold:.1f})", verdicts.bold(comparison.verdict)]
    return out


def claims_table(cells: dict[tuple[str, str], list[dict]]) -> list[str]:
    lines = [
        "| env | claim | checkpoints | mean action: d (t·se) | verdict | sampled actions: d (t·se) | verdict | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env in paper.ENVS:
        if not any(cells.get((env, variant)) for variant in CUSTOMIZATION_VARIANTS):
            continue
        theirs = {p: dict(zip(tables.TABLE2_QUANTITIES, paper.TABLE2[env][p])) for p in paper.TABLE2_POLICIES}
        residual = cells.get((env, "residual"), [])
        for other, quantity, label in tables.TABLE2_CLAIMS:
            their = f"{theirs['residual'][quantity][0]:.1f} vs {theirs[other][quantity][0]:.1f}"
            for checkpoint in ("best", "last"):
                row = _comparison_cells(residual, cells.get((env, other), []), checkpoint, quantity)
                lines.append(f"| {paper.ENV_TITLES[env]} | {label} | {checkpoint} | {' | '.join(row)} | {their} |")
    return lines


def summary_markdown(runs: list[dict]) -> str:
    cells = runs_by_cell(runs)
    lines = [
        f"# Stage 1 at the `{SCALE}` scale: the headline figures",
        "",
        "Written by `python -m rpg_control.reproduce.summary` from the result JSONs beside this file (5M env "
        "steps per run, 100 evaluation episodes per seed). The full tables, every column and both evaluation "
        "modes, are `table1.md` and `table2.md` (and their `_stochastic` twins); how each run went is in "
        "`progress.md`.",
        "",
        "## Table I's Soft PPO column (basic reward, mean action)",
        "",
        *soft_table(cells),
        "",
        "## Table II's claims",
        "",
        "d: the difference of the seeds' mean figures; in brackets the t·se it must exceed (Welch's 95% t over the "
        "seeds; `rpg_control/reproduce/verdicts.py`). The prior is one checkpoint: its side's uncertainty is its "
        "evaluation's standard error. Paper: its Residual PPO figure vs the other row's.",
        "",
        *claims_table(cells),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if summary.md is stale")
    args = parser.parse_args(argv)
    results_dir = REPO_ROOT / "results" / "mujoco" / SCALE
    page = results_dir / "summary.md"
    text = summary_markdown(finished_runs(results_dir, with_prior=True))
    if args.check:
        if (page.read_text() if page.exists() else "") != text:
            stale = f"{page.relative_to(REPO_ROOT)} is stale: run python -m rpg_control.reproduce.summary"
            print(stale, file=sys.stderr)
            return 1
        return 0
    write_text_atomic(page, text)
    print(f"wrote {page.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
