"""Markdown tables laid out like the paper's, our numbers beside the paper's, and the claims' verdicts.

Every table is built from result JSONs only, so it can be regenerated anywhere the results are
committed. A cell's figure pools all evaluation episodes of its seeds (as the paper pools 500 episodes
over 5 seeds): the pooled mean is the episode-weighted mean of the per-run means and the pooled std is
that of the union of episodes, sqrt(E[std² + mean²] − mean²). "Best performance" in Tables I and III
is the best seed's best checkpoint (the paper's definition); Table II shows best- and last-checkpoint
rows. Verdicts test the seeds' means, not the pooled episodes (``verdicts``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rpg_control.reproduce import paper, verdicts
from rpg_control.reproduce.plan import PRIOR_EVALUATION, RunSpec, Scale
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
    return Row(len(specs), len(done), pooled_figures(done, mode))


def pooled_figures(done: list[dict], mode: str = "deterministic") -> dict[str, dict[str, Figure | None]]:
    """checkpoint ("best"/"last") -> quantity -> the figure pooled over the episodes of finished results ``done``."""
    figures: dict[str, dict[str, Figure | None]] = {}
    for checkpoint in ("best", "last"):
        key = eval_key(checkpoint, mode)
        figures[checkpoint] = {
            quantity: pooled([(r["eval"].get(key, {}).get(quantity), r["spec"]["episodes"]) for r in done])
            for quantity in ("total", "basic", "addon", "addon_metric")
        }
    return figures


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
        f"Paper: {paper.PAPER_PROTOCOL}. "
        + (
            "This is the paper's protocol; a cell is complete when all its seeds are in (runs finished below)."
            if (scale.steps, scale.seeds, scale.episodes) == (5_000_000, 5, 100)
            else "Numbers at a reduced scale are a first look, not a reproduction of the paper's figures."
        )
    )
    lines.append("")
    made_by = provenance.get("commands") or []
    lines.append(
        f"Rendered by `{command}`" + (f"; runs made by {', '.join(f'`{c}`' for c in made_by)}." if made_by else ".")
    )
    lines.append(
        f"Runs finished: {provenance['done']}/{provenance['planned']}; commits: "
        f"{', '.join(provenance['commits']) or '—'} "
        f"(sha256 of the rpg/ + rpg_control/ sources the runs executed: {', '.join(provenance['sources']) or '—'}); "
        f"machines: {', '.join(provenance['machines']) or '—'}; total training wall time: "
        f"{provenance['wall_time_h']:.2f} h. "
        f"Per-run result JSONs (config, seed, steps, commit, wall time, machine, eval figures) are under "
        "`run_results/` beside this file."
    )
    if provenance.get("matched"):
        lines.append(
            f"{len(provenance['matched'])} run(s) shown were made with an earlier trainer config than today's defaults "
            "(a sweep now would train them anew; e.g. Ant's checkpoint spacing changed from 20 iterations = 163,840 "
            "steps to 40,960 steps): " + ", ".join(f"`{m}`" for m in provenance["matched"]) + "."
        )
    lines.append("")
    return lines


def provenance(specs: list[RunSpec], results: dict[str, dict]) -> dict:
    done = [results[s.run_id] for s in {s.run_id: s for s in specs}.values() if s.run_id in results]
    return {
        "planned": len({s.run_id for s in specs}),
        "done": len(done),
        "commits": sorted(
            {c[:12] + ("-dirty" if c.endswith("-dirty") else "") for r in done for c in result_commits(r)}
        ),
        "machines": sorted({result_machine(r) for r in done}),
        "wall_time_h": sum(r["wall_time_s"] for r in done) / 3600,
        "commands": sorted({r["command"] for r in done if r.get("command")}),
        "sources": sorted({r["source_sha256"][:12] for r in done if r.get("source_sha256")}),
        "matched": sorted(r["matched_config"] for r in done if r.get("matched_config")),
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


# -- per-seed cells and claims -------------------------------------------------------------------
NOT_RECORDED = "not recorded"


def _done(specs: list[RunSpec], results: dict[str, dict]) -> list[dict]:
    return [results[spec.run_id] for spec in specs if spec.run_id in results]


def seed_cell(specs, results, checkpoint: str, quantity: str, mode: str) -> verdicts.Cell | None:
    """The seeds' means of one table cell; the prior row (one checkpoint) as a fixed value with its std. error."""
    return cell_of(_done(specs, results), checkpoint, quantity, mode)


def cell_of(done: list[dict], checkpoint: str, quantity: str, mode: str) -> verdicts.Cell | None:
    """``seed_cell`` of finished results ``done`` (one cell's seeds, or the prior's one evaluation)."""
    figures = [(r["eval"].get(eval_key(checkpoint, mode), {}).get(quantity), r) for r in done]
    figures = [(f, r) for f, r in figures if f is not None]
    if not figures:
        return None
    if len(figures) == 1 and figures[0][1]["spec"]["variant"] == PRIOR_EVALUATION:
        figure, result = figures[0]
        return verdicts.Cell((figure["mean"],), fixed_se=figure["std"] / math.sqrt(result["spec"]["episodes"]))
    return verdicts.Cell(tuple(f["mean"] for f, _ in figures))


def checkpoint_steps(specs, results, checkpoint: str) -> str:
    """Env steps of the evaluated checkpoints, one per seed; "not recorded" for results made before
    they were (their last checkpoint's step is the run's ``trained_steps``; their best one's is unknown)."""
    steps = []
    for result in _done(specs, results):
        record = (result.get("evaluated_checkpoints") or {}).get(checkpoint) or {}
        step = record.get("checkpoint_step")
        if step is None and checkpoint == "last" and result["spec"]["variant"] != PRIOR_EVALUATION:
            step = result.get("trained_steps")
        steps.append(NOT_RECORDED if step is None else f"{step / 1000:,.0f}k" if step >= 10_000 else f"{step:,}")
    return ", ".join(steps) if steps else "—"


def claim_line(label: str, a: verdicts.Cell | None, b: verdicts.Cell | None, names: tuple[str, str]) -> str:
    comparison = verdicts.compare(a, b)
    if comparison is None:
        return f"{label}: {verdicts.MISSING}."
    seeds = f"{len(a.values)} vs {len(b.values) if b.fixed_se is None else 'one checkpoint'}"
    return (
        f"{label}: {verdicts.bold(comparison.verdict)} — {names[0]} {a.mean:.1f} vs {names[1]} {b.mean:.1f} "
        f"({comparison.text()}; seeds {seeds})"
    )


def _multi_claim(label: str, mine: verdicts.Cell | None, others: dict[str, verdicts.Cell | None], titles) -> str:
    comparisons = {k: verdicts.compare(mine, cell) for k, cell in others.items()}
    if mine is None or any(c is None for c in comparisons.values()):
        return f"{label}: {verdicts.MISSING}."
    overall = verdicts.combine([c.verdict for c in comparisons.values()])
    parts = "; ".join(f"vs {titles[k]} {others[k].mean:.1f}: {c.verdict} ({c.text()})" for k, c in comparisons.items())
    return f"{label}: {verdicts.bold(overall)} — {mine.mean:.1f} over {len(mine.values)} seed(s); {parts}"


def _best_seed(specs, results, mode: str, quantity: str) -> tuple[Figure, dict] | None:
    return best_seed_of(_done(specs, results), mode, quantity)


def best_seed_of(done: list[dict], mode: str, quantity: str) -> tuple[Figure, dict] | None:
    """The paper's "best performance": the best seed's best checkpoint (one policy, its episodes)."""
    key = eval_key("best", mode)
    done = [r for r in done if r["eval"].get(key, {}).get(quantity)]
    if not done:
        return None
    # The seed is picked on the deterministic evaluation's basic reward, as Table II's prior is.
    result = max(done, key=lambda r: r["eval"]["best"]["basic"]["mean"])
    figure = result["eval"][key][quantity]
    return (figure["mean"], figure["std"]), result


def best_seed_note(result: dict) -> str:
    record = (result.get("evaluated_checkpoints") or {}).get("best") or {}
    step = record.get("checkpoint_step")
    return f"seed {result['seed']}, step {NOT_RECORDED if step is None else f'{step:,}'}"


# -- Table I and III ---------------------------------------------------------------------------------
def _basic_task_sections(envs, columns, titles, rows_specs, results, mode, paper_table) -> list[str]:
    """Average (last checkpoints, pooled), best (the best seed's best checkpoint, like the paper) and, as an
    extra, every seed's best checkpoint pooled."""
    lines = ["## Average performance (final policy of each seed, all episodes pooled)", ""]
    rows = {key: collect(specs, results, mode) for key, specs in rows_specs.items() if key[0] in envs}
    ours = {env: {c: rows[(env, c)].get("last", "basic") for c in columns} for env in envs}
    theirs = {env: {c: paper_table["average"][env][c] for c in columns} for env in envs}
    lines += _compare_table(envs, columns, titles, ours, theirs) + [""]
    lines += [
        "## Best performance (the best seed's best checkpoint)",
        "",
        "As in the paper, where Table I's best Soft PPO figure is Table II's prior: one checkpoint, the "
        "best-checkpoint policy of the seed whose deterministic basic reward is highest. Picking the best of "
        "the seeds on the evaluation itself flatters every column alike.",
        "",
    ]
    best = {env: {c: _best_seed(rows_specs[(env, c)], results, mode, "basic") for c in columns} for env in envs}
    ours = {env: {c: (b[0] if b else None) for c, b in best[env].items()} for env in envs}
    theirs = {env: {c: paper_table["best"][env][c] for c in columns} for env in envs}
    lines += _compare_table(envs, columns, titles, ours, theirs) + [""]
    for env in envs:
        notes = ", ".join(f"{titles[c]}: {best_seed_note(b[1])}" for c, b in best[env].items() if b)
        lines.append(f"- {paper.ENV_TITLES[env]}: {notes or '—'}.")
    lines += ["", "## Best checkpoints of every seed, pooled (extra column set; not the paper's definition)", ""]
    ours = {env: {c: rows[(env, c)].get("best", "basic") for c in columns} for env in envs}
    lines += _compare_table(envs, columns, titles, ours, theirs) + [""]
    lines.append(
        "Env steps of each seed's evaluated best checkpoint: "
        + "; ".join(
            f"{paper.ENV_TITLES[env]} {titles[c]}: {checkpoint_steps(rows_specs[(env, c)], results, 'best')}"
            for env in envs
            for c in columns
        )
        + "."
    )
    lines.append("")
    return lines


def _verdict_note(seeds: int) -> str:
    """How verdicts are decided, with the t range that the scale's ``seeds`` per cell give."""
    rule = (
        'Verdicts: a claim "A above B" is *reproduced* when the difference of the seeds\' mean figures d exceeds '
        "t·se (se over seeds, Welch's t at 95%, two-sided; `rpg_control/reproduce/verdicts.py`), *opposite* when "
        "−d does, else *inconclusive*."
    )
    if seeds < 2:
        return rule + " With one seed per cell there is no spread over seeds, so no claim gets a verdict."
    low, high = verdicts.t_quantile(2 * (seeds - 1)), verdicts.t_quantile(seeds - 1)
    return (
        f"{rule} With {seeds} seeds per cell Welch's degrees of freedom lie between "
        f"{seeds - 1} and {2 * (seeds - 1)}, so t is {low:.1f} to {high:.1f}"
        + (": only gaps several times the seed spread pass." if seeds < 4 else ".")
    )


def table1_markdown(envs, scale, specs_by_cell, results, command, mode="deterministic") -> str:
    """``specs_by_cell[(env, variant)]`` lists the seeds' run specs of one cell."""
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header(
        "Table I — entropy-regularized PPO variants on MuJoCo (basic reward)",
        scale,
        command,
        provenance(all_specs, results),
        mode,
    )
    lines[2] = lines[2].replace("{N}", "1")
    variants = paper.TABLE1_VARIANTS
    lines += _basic_task_sections(envs, variants, paper.TABLE1_TITLES, specs_by_cell, results, mode, paper.TABLE1)
    lines += ["## Claims", "", _verdict_note(scale.seeds), ""]
    for env in envs:
        for checkpoint, paper_key in (("last", "average"), ("best", "best")):
            mine = seed_cell(specs_by_cell[(env, "soft")], results, checkpoint, "basic", mode)
            others = {
                v: seed_cell(specs_by_cell[(env, v)], results, checkpoint, "basic", mode)
                for v in variants
                if v != "soft"
            }
            theirs = paper.TABLE1[paper_key][env]
            paper_numbers = f"paper: Soft {theirs['soft'][0]:.1f} vs " + ", ".join(
                f"{paper.TABLE1_TITLES[v]} {theirs[v][0]:.1f}" for v in others
            )
            label = (
                f"{paper.ENV_TITLES[env]}, {checkpoint} checkpoints ({paper_key} performance): "
                "Soft PPO above each other entropy variant"
            )
            lines.append(f"- {_multi_claim(label, mine, others, paper.TABLE1_TITLES)} ({paper_numbers}).")
    return "\n".join(lines) + "\n"


def table3_markdown(envs, scale, specs_by_cell, results, command, mode="deterministic") -> str:
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header(
        "Table III — Soft PPO: global vs state-dependent std (basic reward)",
        scale,
        command,
        provenance(all_specs, results),
        mode,
    )
    lines[2] = lines[2].replace("{N}", "3")
    lines += _basic_task_sections(
        envs, paper.TABLE3_STDS, paper.TABLE3_TITLES, specs_by_cell, results, mode, paper.TABLE3
    )
    lines += ["## Claims", "", _verdict_note(scale.seeds), ""]
    for env in envs:
        for checkpoint, paper_key in (("last", "average"), ("best", "best")):
            cells = [seed_cell(specs_by_cell[(env, s)], results, checkpoint, "basic", mode) for s in paper.TABLE3_STDS]
            theirs = paper.TABLE3[paper_key][env]
            label = (
                f"{paper.ENV_TITLES[env]}, {checkpoint} checkpoints ({paper_key} performance): "
                "global std above state std"
            )
            line = claim_line(label, cells[0], cells[1], ("global", "state"))
            lines.append(f"- {line} (paper: {theirs['global'][0]:.1f} vs {theirs['state'][0]:.1f}).")
    return "\n".join(lines) + "\n"


# -- Table II ----------------------------------------------------------------------------------------
TABLE2_QUANTITIES = ("total", "basic", "addon_metric", "addon")
TABLE2_CLAIMS = (
    ("greedy", "total", "Residual PPO's total reward above Greedy PPO's"),
    ("kl", "total", "Residual PPO's total reward above KL PPO's"),
    ("prior", "addon", "Residual PPO's add-on reward above the prior's"),
)


def table2_rows(envs, specs_by_cell, results, mode="deterministic", checkpoint="best"):
    """env -> policy -> quantity -> pooled figure (``checkpoint``: best, like the paper, or last)."""
    out = {}
    for env in envs:
        out[env] = {}
        for policy in paper.TABLE2_POLICIES:
            row = collect(specs_by_cell.get((env, policy), []), results, mode)
            out[env][policy] = {q: row.get(checkpoint, q) for q in TABLE2_QUANTITIES}
    return out


def _table2_env_block(env, specs_by_cell, results, mode, prior) -> list[str]:
    lines = [f"## {paper.ENV_TITLES[env]} (add-on metric: {paper.ADDON_METRIC_TITLES[env]})", ""]
    if prior:
        lines += [
            f"Prior: `{prior.get('display', prior.get('path'))}` (sha256 {str(prior.get('sha256'))[:12]}), "
            f"{prior.get('origin', '')}.",
            "",
        ]
    metric_title = paper.ADDON_METRIC_TITLES[env].replace("|", "\\|")
    lines.append(
        f"| Policy | | Total reward | Basic reward | {metric_title} | Add-on reward | checkpoint steps (per seed) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    ours = {c: table2_rows([env], specs_by_cell, results, mode, c)[env] for c in ("best", "last")}
    theirs = paper_table2(env)
    bold = {
        source: _bold_best({p: figures[p]["total"] for p in paper.TABLE2_POLICIES if p != "full"})
        for source, figures in (("best", ours["best"]), ("last", ours["last"]), ("paper", theirs))
    }
    for policy in paper.TABLE2_POLICIES:
        specs = specs_by_cell.get((env, policy), [])
        sources = [("ours, best ckpt", "best", ours["best"]), ("ours, last ckpt", "last", ours["last"])]
        if policy == PRIOR_EVALUATION:  # one checkpoint: its best and last rows are the same policy
            sources = [("ours", "best", ours["best"])]
        for index, (name, key, figures) in enumerate(sources + [("paper", "paper", theirs)]):
            cells = [
                fmt(figures[policy]["total"], bold=policy == bold[key]),
                fmt(figures[policy]["basic"]),
                fmt(figures[policy]["addon_metric"], digits=2),
                fmt(figures[policy]["addon"]),
            ]
            steps = checkpoint_steps(specs, results, key) if key != "paper" else ""
            title = paper.TABLE2_TITLES[policy] if index == 0 else ""
            lines.append(f"| {title} | {name} | " + " | ".join(cells) + f" | {steps} |")
    lines.append("")
    return lines


def table2_markdown(envs, scale, specs_by_cell, results, command, priors: dict[str, dict], mode="deterministic") -> str:
    all_specs = [s for specs in specs_by_cell.values() for s in specs]
    lines = header(
        "Table II — Residual PPO: customizing a prior on MuJoCo", scale, command, provenance(all_specs, results), mode
    )
    lines[2] = lines[2].replace("{N}", "2")
    lines.append(
        "Total = basic + add-on reward, evaluated on the full task. Each method has two rows: each seed's best "
        "checkpoint (picked during training by the run's selection metric, the paper's choice) and each seed's "
        "last checkpoint; the last column gives the env steps at which the evaluated checkpoints were saved "
        f'("{NOT_RECORDED}" for runs made before they were recorded). The prior row evaluates the one prior '
        "checkpoint. Bold: the best total of each row set (best / last / paper) other than the Full Policy "
        "(trained from scratch on r + r_R, the upper bound)."
    )
    lines.append("")
    for env in envs:
        lines += _table2_env_block(env, specs_by_cell, results, mode, priors.get(env))
    lines += ["## Claims", "", _verdict_note(scale.seeds), ""]
    for env in envs:
        claims = table2_claims(env, specs_by_cell, results, mode)
        lines += [f"- {paper.ENV_TITLES[env]}:"] + ["  - " + claim for claim in claims]
    return "\n".join(lines) + "\n"


def paper_table2(env: str) -> dict[str, dict[str, Figure]]:
    """The paper's Table II for ``env``: policy -> quantity -> (mean, std)."""
    return {p: dict(zip(TABLE2_QUANTITIES, paper.TABLE2[env][p])) for p in paper.TABLE2_POLICIES}


def table2_comparisons(done_by_policy: dict[str, list[dict]], mode: str):
    """Each Table II claim at each checkpoint kind: (other policy, quantity, label, checkpoint, Residual's
    cell, the other's cell), the cells made of the finished results of each policy (``done_by_policy``)."""
    for other, quantity, label in TABLE2_CLAIMS:
        for checkpoint in ("best", "last"):
            residual, theirs = (
                cell_of(done_by_policy.get(policy, []), checkpoint, quantity, mode) for policy in ("residual", other)
            )
            yield other, quantity, label, checkpoint, residual, theirs


def table2_claims(env: str, specs_by_cell, results, mode: str = "deterministic") -> list[str]:
    theirs = paper_table2(env)
    done = {policy: _done(specs_by_cell.get((env, policy), []), results) for policy in paper.TABLE2_POLICIES}
    claims = []
    for other, quantity, label, checkpoint, residual, cell in table2_comparisons(done, mode):
        names = ("Residual", paper.TABLE2_TITLES[other])
        line = claim_line(f"{label} ({checkpoint} checkpoints)", residual, cell, names)
        claims.append(f"{line} (paper: {theirs['residual'][quantity][0]:.1f} vs {theirs[other][quantity][0]:.1f}).")
    return claims
