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

from rpg_control.reproduce import paper, tables, verdicts
from rpg_control.reproduce.plan import CUSTOMIZATION_VARIANTS, SCALES
from rpg_control.reproduce.progress import RESULTS_DIR, SCALE, finished_runs, runs_by_cell, write_or_check


def _soft_row(env: str, runs: list[dict], seeds: int) -> str:
    """One env's Table I Soft PPO figures (mean action) beside the paper's."""
    title = paper.ENV_TITLES[env]
    average, best = (tables.fmt(paper.TABLE1[kind][env]["soft"]) for kind in ("average", "best"))
    picked = tables.best_seed_of(runs, "deterministic", "basic")
    if picked is None:  # no finished seed
        return f"| {title} | {len(runs)}/{seeds} | — | — | — | {average} | {best} |"
    last = tables.pooled_figures(runs)["last"]["basic"]
    means = sorted(m["mean"] for run in runs if (m := run["eval"].get("last", {}).get("basic")))
    spread = f"{means[0]:.1f} – {means[-1]:.1f}" if means else "—"
    figure, result = picked
    return (
        f"| {title} | {len(runs)}/{seeds} | {tables.fmt(last)} | {spread} | "
        f"{tables.fmt(figure)} ({tables.best_seed_note(result)}) | {average} | {best} |"
    )


def soft_table(cells: dict[tuple[str, str], list[dict]], seeds: int) -> list[str]:
    """Table I's Soft PPO column, one row per env (``seeds``: the seeds a cell plans)."""
    return [
        "| env | seeds | ours: last checkpoints, episodes pooled | seeds' means (min – max) | ours: best seed's "
        "best checkpoint | paper: average | paper: best |",
        "|---|---|---|---|---|---|---|",
        *(_soft_row(env, cells.get((env, "soft"), []), seeds) for env in paper.ENVS),
    ]


def _verdict_cells(comparison: verdicts.Comparison | None) -> list[str]:
    if comparison is None:
        return ["—", verdicts.MISSING]
    bound = "one seed" if comparison.threshold is None else f"{comparison.threshold:.1f}"
    return [f"{comparison.difference:+.1f} ({bound})", verdicts.bold(comparison.verdict)]


def _seeds_text(residual: verdicts.Cell | None, other: verdicts.Cell | None) -> str:
    def count(cell: verdicts.Cell | None) -> str:
        return "0" if cell is None else "prior" if cell.fixed_se is not None else str(len(cell.values))

    return f"{count(residual)} vs {count(other)}"


def _env_claim_rows(env: str, done: dict[str, list[dict]]) -> list[str]:
    """Table II's claims on ``env``: both checkpoint kinds, one verdict pair per evaluation mode."""
    theirs = tables.paper_table2(env)
    by_mode = {mode: list(tables.table2_comparisons(done, mode)) for mode in tables.EVAL_MODES}
    rows = []
    for index, (other, quantity, label, checkpoint, residual, cell) in enumerate(by_mode["deterministic"]):
        row = [paper.ENV_TITLES[env], label, checkpoint, _seeds_text(residual, cell)]
        for mode in tables.EVAL_MODES:
            *_, a, b = by_mode[mode][index]
            row += _verdict_cells(verdicts.compare(a, b))
        row.append(f"{theirs['residual'][quantity][0]:.1f} vs {theirs[other][quantity][0]:.1f}")
        rows.append("| " + " | ".join(row) + " |")
    return rows


def claims_table(cells: dict[tuple[str, str], list[dict]]) -> list[str]:
    """Table II's claims for every env with a customization run."""
    lines = [
        "| env | claim | checkpoints | seeds | mean action: d (t·se) | verdict | sampled actions: d (t·se) | "
        "verdict | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env in paper.ENVS:
        if any(cells.get((env, variant)) for variant in CUSTOMIZATION_VARIANTS):
            lines += _env_claim_rows(env, {policy: cells.get((env, policy), []) for policy in paper.TABLE2_POLICIES})
    return lines


def summary_markdown(runs: list[dict]) -> str:
    """The page: Table I's Soft PPO column and Table II's claims, from finished results (the prior's included)."""
    cells = runs_by_cell(runs)
    scale = SCALES[SCALE]
    lines = [
        f"# Stage 1 at the `{SCALE}` scale: the headline figures",
        "",
        f"Written by `python -m rpg_control.reproduce.summary` from the result JSONs beside this file: "
        f"{scale.describe()}. The full tables, every column and both evaluation modes, are `table1.md` and "
        "`table2.md` (and their `_stochastic` twins); how each run went is in `progress.md`.",
        "",
        "## Table I's Soft PPO column (basic reward, mean action)",
        "",
        *soft_table(cells, scale.seeds),
        "",
        "## Table II's claims",
        "",
        "d: the difference of the seeds' mean figures; in brackets the t·se it must exceed (Welch's 95% t over the "
        "seeds; `rpg_control/reproduce/verdicts.py`). Seeds: finished seeds of Residual PPO vs of the other row; "
        "the prior is one checkpoint, whose side's uncertainty is its evaluation's standard error. Paper: its "
        "Residual PPO figure vs the other row's.",
        "",
        *claims_table(cells),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if summary.md is stale")
    args = parser.parse_args(argv)
    text = summary_markdown(finished_runs(RESULTS_DIR, with_prior=True))
    return write_or_check(RESULTS_DIR / "summary.md", text, "rpg_control.reproduce.summary", args.check)


if __name__ == "__main__":
    sys.exit(main())
