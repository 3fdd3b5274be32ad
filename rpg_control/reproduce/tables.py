"""Markdown tables laid out like the paper's, our numbers beside the paper's, and the claims check.

Every table is built from result JSONs only, so it can be regenerated anywhere the results are
committed. Figures pool all evaluation episodes of a row (as the paper pools 500 episodes over 5
seeds): the pooled mean is the episode-weighted mean of the per-run means and the pooled std is
that of the union of episodes, sqrt(E[std² + mean²] − mean²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rpg_control.reproduce import paper
from rpg_control.reproduce.plan import RunSpec, Scale
from rpg_control.reproduce.store import result_commits, result_machine

Figure = tuple[float, float]  # (mean, std)


def pooled(parts: list[tuple[dict, int]]) -> Figure | None:
    """Pool per-run ``{"mean", "std"}`` over their episode counts into one (mean, std)."""
    parts = [(figure, count) for figure, count in parts if figure is not None and count > 0]
    if not parts:
        return None
    episodes = sum(count for _, count in parts)
    mean = sum(figure["mean"] * count for figure, count in parts) / episodes
    second_moment = sum((figure["std"] ** 2 + figure["mean"] ** 2) * count for figure, count in parts) / episodes
    return mean, math.sqrt(max(second_moment - mean**2, 0.0))


@dataclass
class Row:
    """Pooled figures of one table cell group (one env × one variant) and how many runs fed it."""

    runs_planned: int
    runs_done: int
    figures: dict[str, dict[str, Figure | None]]  # checkpoint ("best"/"last") -> quantity -> figure

    def get(self, checkpoint: str, quantity: str) -> Figure | None:
        return self.figures.get(checkpoint, {}).get(quantity)


EVAL_MODES = ("deterministic", "stochastic")
MODE_TEXT = {
    "deterministic": "deterministic evaluation (the policy's mean action)",
    "stochastic": "stochastic evaluation (actions sampled from the policy)",
}


def eval_key(checkpoint: str, mode: str) -> str:
    """Key of a result's ``eval`` dict: ``best``/``last`` (deterministic) or ``best_stochastic``/…"""
    return checkpoint if mode == "deterministic" else f"{checkpoint}_stochastic"


def collect(specs: list[RunSpec], results: dict[str, dict], mode: str = "deterministic") -> Row:
    done = [results[spec.run_id] for spec in specs if spec.run_id in results]
    figures: dict[str, dict[str, Figure | None]] = {}
    for checkpoint in ("best", "last"):
        key = eval_key(checkpoint, mode)
        figures[checkpoint] = {
            quantity: pooled([(r["eval"].get(key, {}).get(quantity), r["spec"]["episodes"]) for r in done])
            for quantity in ("total", "basic", "addon", "addon_metric")
        }
    return Row(len(specs), len(done), figures)


def fmt(figure: Figure | None, digits: int = 1, bold: bool = False) -> str:
    if figure is None:
        return "—"
    text = f"{figure[0]:.{digits}f} ± {figure[1]:.{digits}f}"
    return f"**{text}**" if bold else text


def header(title: str, scale: Scale, command: str, provenance: dict, mode: str = "deterministic") -> list[str]:
    other = "table{N}_stochastic.md" if mode == "deterministic" else "table{N}.md"
    lines = [f"# {title}", "", f"Our numbers: {MODE_TEXT[mode]}; the other mode is in `{other}` beside this file.", ""]
    lines.append(
        f"**Scale: `{scale.label}`** — {scale.describe()}. "
        f"Paper: {paper.PAPER_PROTOCOL}. Numbers at a reduced scale are a first look, not a reproduction of the paper's figures."
    )
    lines.append("")
    made_by = provenance.get("commands") or []
    lines.append(f"Rendered by `{command}`" + (f"; runs made by {', '.join(f'`{c}`' for c in made_by)}." if made_by else "."))
    lines.append(
        f"Runs finished: {provenance['done']}/{provenance['planned']}; commits: {', '.join(provenance['commits']) or '—'} "
        f"(sha256 of the rpg/ + rpg_control/ sources the runs executed: {', '.join(provenance['sources']) or '—'}); "
        f"machines: {', '.join(provenance['machines']) or '—'}; total training wall time: {provenance['wall_time_h']:.2f} h. "
        f"Per-run result JSONs (config, seed, steps, commit, wall time, machine, eval figures) are under `run_results/` beside this file."
    )
    lines.append("")
    return lines


def provenance(specs: list[RunSpec], results: dict[str, dict]) -> dict:
    done = [results[s.run_id] for s in {s.run_id: s for s in specs}.values() if s.run_id in results]
    return {
        "planned": len({s.run_id for s in specs}),
        "done": len(done),
        "commits": sorted({c[:12] + ("-dirty" if c.endswith("-dirty") else "")
                           for r in done for c in result_commits(r)}),
        "machines": sorted({result_machine(r) for r in done}),
        "wall_time_h": sum(r["wall_time_s"] for r in done) / 3600,
        "commands": sorted({r["command"] for r in done if r.get("command")}),
        "sources": sorted({r["source_sha256"][:12] for r in done if r.get("source_sha256")}),
    }


def _bold_best(cells: dict[str, Figure | None]) -> str | None:
    known = {key: figure for key, figure in cells.items() if figure is not None}
    return max(known, key=lambda key: known[key][0]) if known else None


def _compare_table(envs, columns, titles, ours, theirs, first_column="Env.") -> list[str]:
    """Two rows per env (ours, paper); the best mean of each row in bold, like the paper."""
    lines = [f"| {first_column} | | " + " | ".join(titles[c] for c in columns) + " |"]
    lines.append("|---|---|" + "---|" * len(columns))
    for env in envs:
        for source, figures in (("ours", ours[env]), ("paper", theirs[env])):
            best = _bold_best(figures)
            cells = [fmt(figures[c], bold=(c == best)) for c in columns]
            name = paper.ENV_TITLES[env] if source == "ours" else ""
            lines.append(f"| {name} | {source} | " + " | ".join(cells) + " |")
    return lines


def _verdict(holds: bool | None) -> str:
    return "n/a (runs missing)" if holds is None else ("**reproduced**" if holds else "**not reproduced**")


def _claim_ge(name: str, mine: Figure | None, others: dict[str, Figure | None], titles: dict[str, str]) -> tuple[bool | None, str]:
    if mine is None or any(figure is None for figure in others.values()):
        return None, ""
    holds = all(mine[0] >= figure[0] for figure in others.values())
    return holds, f"{name} {mine[0]:.1f} vs " + ", ".join(f"{titles[k]} {v[0]:.1f}" for k, v in others.items())


# -- Table I -----------------------------------------------------------------------------------
def table1_markdown(envs, scale, specs_by_cell, results, command, mode="deterministic") -> str:
    """``specs_by_cell[(env, variant)]`` lists the seeds' run specs of one cell."""
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header("Table I — entropy-regularized PPO variants on MuJoCo (basic reward)", scale, command, provenance(all_specs, results), mode)
    lines[2] = lines[2].replace("{N}", "1")
    rows = {key: collect(specs, results, mode) for key, specs in specs_by_cell.items()}
    variants = paper.TABLE1_VARIANTS
    for checkpoint, section, paper_key in (
        ("last", "Average performance (final policy of each seed)", "average"),
        ("best", "Best performance (best checkpoint of each seed)", "best"),
    ):
        lines += [f"## {section}", ""]
        ours = {env: {v: rows[(env, v)].get(checkpoint, "basic") for v in variants} for env in envs}
        theirs = {env: {v: paper.TABLE1[paper_key][env][v] for v in variants} for env in envs}
        lines += _compare_table(envs, variants, paper.TABLE1_TITLES, ours, theirs) + [""]
    lines += ["## Claims", ""]
    for env in envs:
        mine = rows[(env, "soft")].get("last", "basic")
        others = {v: rows[(env, v)].get("last", "basic") for v in variants if v != "soft"}
        holds, numbers = _claim_ge("Soft", mine, others, paper.TABLE1_TITLES)
        paper_numbers = f"paper: Soft {paper.TABLE1['average'][env]['soft'][0]:.1f} vs " + ", ".join(
            f"{paper.TABLE1_TITLES[v]} {paper.TABLE1['average'][env][v][0]:.1f}" for v in others
        )
        lines.append(
            f"- {paper.ENV_TITLES[env]}: Soft PPO ≥ the other entropy variants (average performance): "
            f"{_verdict(holds)}{' — ' + numbers if numbers else ''} ({paper_numbers})."
        )
    return "\n".join(lines) + "\n"


# -- Table II ----------------------------------------------------------------------------------
TABLE2_QUANTITIES = ("total", "basic", "addon_metric", "addon")


def table2_rows(envs, specs_by_cell, results, mode="deterministic") -> dict[str, dict[str, dict[str, Figure | None]]]:
    """env -> policy -> quantity -> pooled figure (best checkpoints, like the paper)."""
    out = {}
    for env in envs:
        out[env] = {}
        for policy in paper.TABLE2_POLICIES:
            row = collect(specs_by_cell.get((env, policy), []), results, mode)
            out[env][policy] = {q: row.get("best", q) for q in TABLE2_QUANTITIES}
    return out


def table2_markdown(envs, scale, specs_by_cell, results, command, priors: dict[str, dict], mode="deterministic") -> str:
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header("Table II — Residual PPO: customizing a prior on MuJoCo", scale, command, provenance(all_specs, results), mode)
    lines[2] = lines[2].replace("{N}", "2")
    lines.append(
        "Total = basic + add-on reward; every row is evaluated on the full task from each seed's best checkpoint; "
        "the prior row evaluates the one prior checkpoint. Bold: the best total reward of each block other than the "
        "Full Policy (trained from scratch on r + r_R, the upper bound)."
    )
    lines.append("")
    ours = table2_rows(envs, specs_by_cell, results, mode)
    for env in envs:
        prior = priors.get(env)
        lines.append(f"## {paper.ENV_TITLES[env]} (add-on metric: {paper.ADDON_METRIC_TITLES[env]})")
        lines.append("")
        if prior:
            lines.append(f"Prior: `{prior.get('path')}` (sha256 {str(prior.get('sha256'))[:12]}), {prior.get('origin', '')}.")
            lines.append("")
        metric_title = paper.ADDON_METRIC_TITLES[env].replace("|", "\\|")
        lines.append(f"| Policy | | Total reward | Basic reward | {metric_title} | Add-on reward |")
        lines.append("|---|---|---|---|---|---|")
        theirs = {p: dict(zip(TABLE2_QUANTITIES, paper.TABLE2[env][p])) for p in paper.TABLE2_POLICIES}
        best = {source: _bold_best({p: figures[p]["total"] for p in paper.TABLE2_POLICIES if p != "full"})
                for source, figures in (("ours", ours[env]), ("paper", theirs))}
        for policy in paper.TABLE2_POLICIES:
            for source, figures in (("ours", ours[env]), ("paper", theirs)):
                cells = [
                    fmt(figures[policy]["total"], bold=policy == best[source]),
                    fmt(figures[policy]["basic"]),
                    fmt(figures[policy]["addon_metric"], digits=2),
                    fmt(figures[policy]["addon"]),
                ]
                name = paper.TABLE2_TITLES[policy] if source == "ours" else ""
                lines.append(f"| {name} | {source} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Claims", ""]
    for env in envs:
        lines += [f"- {paper.ENV_TITLES[env]}:"] + ["  - " + claim for claim in table2_claims(env, ours[env])]
    return "\n".join(lines) + "\n"


def table2_claims(env: str, ours: dict[str, dict[str, Figure | None]]) -> list[str]:
    theirs = {p: dict(zip(TABLE2_QUANTITIES, paper.TABLE2[env][p])) for p in paper.TABLE2_POLICIES}
    claims = []
    for other, quantity, label in (
        ("greedy", "total", "Residual PPO's total reward above Greedy PPO's"),
        ("kl", "total", "Residual PPO's total reward above KL PPO's"),
        ("prior", "addon", "Residual PPO's add-on reward above the prior's"),
    ):
        mine, base = ours["residual"][quantity], ours[other][quantity]
        holds = None if mine is None or base is None else mine[0] > base[0]
        numbers = "" if holds is None else f" — {mine[0]:.1f} vs {base[0]:.1f}"
        claims.append(
            f"{label}: {_verdict(holds)}{numbers} "
            f"(paper: {theirs['residual'][quantity][0]:.1f} vs {theirs[other][quantity][0]:.1f})."
        )
    return claims


# -- Table III ---------------------------------------------------------------------------------
def table3_markdown(envs, scale, specs_by_cell, results, command, mode="deterministic") -> str:
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header("Table III — Soft PPO: global vs state-dependent std (basic reward)", scale, command, provenance(all_specs, results), mode)
    lines[2] = lines[2].replace("{N}", "3")
    rows = {key: collect(specs, results, mode) for key, specs in specs_by_cell.items()}
    for checkpoint, section, paper_key in (
        ("last", "Average performance (final policy of each seed)", "average"),
        ("best", "Best performance (best checkpoint of each seed)", "best"),
    ):
        lines += [f"## {section}", ""]
        ours = {env: {s: rows[(env, s)].get(checkpoint, "basic") for s in paper.TABLE3_STDS} for env in envs}
        theirs = {env: dict(paper.TABLE3[paper_key][env]) for env in envs}
        lines += _compare_table(envs, paper.TABLE3_STDS, paper.TABLE3_TITLES, ours, theirs) + [""]
    lines += ["## Claims", ""]
    for env in envs:
        for checkpoint, paper_key in (("last", "average"), ("best", "best")):
            holds, numbers = _claim_ge(
                "Global Std.", rows[(env, "global")].get(checkpoint, "basic"), {"state": rows[(env, "state")].get(checkpoint, "basic")}, paper.TABLE3_TITLES
            )
            theirs = paper.TABLE3[paper_key][env]
            lines.append(
                f"- {paper.ENV_TITLES[env]}, {paper_key} performance: global std ≥ state-dependent std: {_verdict(holds)}"
                f"{' — ' + numbers if numbers else ''} (paper: {theirs['global'][0]:.1f} vs {theirs['state'][0]:.1f})."
            )
    return "\n".join(lines) + "\n"
