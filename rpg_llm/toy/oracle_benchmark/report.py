"""The exact-oracle benchmark's report: ``oracle_benchmark.md`` / ``.json`` / ``.png`` from the cached runs.

Every number is read from the runs (the probe's curves) and from the world's exact targets; the findings
are generated from those numbers by fixed rules (within ``REACHED_NATS`` of the target = reached), not
written by hand. The JSON holds everything: provenance, settings, world, the exact targets, every run's
curve and facts, the table rows and the findings.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from rpg.utils.atomic import write_bytes_atomic
from rpg_llm.report import markdown_table, write_result_files
from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings
from rpg_llm.toy.world import ToyWorld

__all__ = [
    "REACHED_NATS",
    "NAME",
    "collect",
    "contender_summary",
    "table_rows",
    "target_rows",
    "findings",
    "markdown",
    "plot",
    "write_report",
]

REACHED_NATS = 0.05  # a contender "reaches its target" when its final mean KL to it is at most this
NAME = "oracle_benchmark"
FAMILY_NAMES = {"kl": "KL", "residual": "Residual"}


def collect(runs: list[dict], settings: BenchmarkSettings, world: ToyWorld, missing: list[str] = ()) -> dict:
    """The report's input: settings, world, both exact targets and the runs grouped by contender key."""
    targets = {}
    for family, (omega_prime, alpha_hat) in (("kl", settings.kl_target), ("residual", settings.residual_target)):
        exact = world.exact_policy_statistics(omega_prime, alpha_hat)
        targets[family] = {"omega_prime": omega_prime, "alpha_hat": alpha_hat}
        targets[family].update({k: exact[k] for k in ("basic", "addon", "total", "kl_to_prior")})
    contenders: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        entry = contenders.setdefault(
            run["key"], {k: run[k] for k in ("label", "family", "trainer", "notes", "omega_prime", "alpha_hat")}
        )
        entry.setdefault("runs", []).append(run)
    return {
        "settings": dataclasses.asdict(settings),
        "world": dataclasses.asdict(world.config),
        "targets": targets,
        "contenders": contenders,
        "missing": list(missing),
    }


def contender_summary(entry: dict, budget: int) -> dict:
    """Mean / spread over seeds of one contender's curves, and the numbers its table row and findings use."""
    curves = [run["curve"] for run in entry["runs"]]
    n = min(len(c) for c in curves)  # seeds share evaluation points; a short curve trims the others
    completions = np.array([p["completions"] for p in curves[0][:n]], dtype=float)
    kl, kl_stderr, seconds, basic, addon = (
        np.array([[p[k] for p in c[:n]] for c in curves])
        for k in ("kl_to_target", "kl_stderr", "seconds", "basic", "addon")
    )
    kl_mean = kl.mean(0)
    reached = [int(c) for c, value in zip(completions, kl_mean) if value <= REACHED_NATS]
    return {
        "seeds": [run["seed"] for run in entry["runs"]],
        "completions": completions.tolist(),
        "seconds_mean": seconds.mean(0).tolist(),
        "kl_mean": kl_mean.tolist(),
        "kl_min": kl.min(0).tolist(),
        "kl_max": kl.max(0).tolist(),
        "final_kl_mean": float(kl_mean[-1]),
        "final_kl_std": float(kl[:, -1].std(ddof=1)) if len(curves) > 1 else 0.0,
        "final_kl_max_stderr": max(c[n - 1]["kl_stderr"] for c in curves),
        "kl_at_half_budget": float(np.interp(budget / 2, completions, kl_mean)),
        "completions_to_reach": reached[0] if reached else None,
        "train_seconds": float(seconds[:, -1].mean()),
        "basic": float(basic[:, -1].mean()),
        "addon": float(addon[:, -1].mean()),
        "total": float((basic + addon)[:, -1].mean()),
        "previous_kl_mean": float(kl_mean[-2]) if n > 1 else None,
        "last_drop": _last_drop(kl, kl_stderr) if n > 1 else None,
    }


def _last_drop(kl: np.ndarray, kl_stderr: np.ndarray) -> dict:
    """The per-seed drop of KL over the last two curve points [seeds, points]: its mean, a standard error and
    whether the drop is clearly positive (mean > 2 s.e.). Several seeds: the s.e. over seeds (it contains any
    Monte Carlo noise). One seed: the Monte Carlo s.e. of the difference as if the two estimates were
    independent (the probe draws both with the same seed, so they are positively correlated and this s.e. is
    conservative: a real drop may be called flat, a flat curve is not called falling); an
    exact evaluation of one seed has no noise estimate, so ``falling`` is then None (undecided)."""
    drops = kl[:, -2] - kl[:, -1]
    if len(drops) > 1:
        stderr, source = float(drops.std(ddof=1) / np.sqrt(len(drops))), "s.e. over seeds"
    else:
        stderr, source = float(np.hypot(kl_stderr[0, -2], kl_stderr[0, -1])), "Monte Carlo s.e., one seed"
    falling = None if stderr == 0 and len(drops) == 1 else bool(drops.mean() > 2 * stderr)
    return {"mean": float(drops.mean()), "stderr": stderr, "source": source, "falling": falling}


def _target_text(family: str, omega_prime: float, alpha_hat: float) -> str:
    return f"{FAMILY_NAMES[family]} (ω' = {omega_prime:g}, α̂ = {alpha_hat:g})"


COLUMNS = [
    ("contender", "contender"),
    ("trainer", "trainer"),
    ("target", "target (ω', α̂)"),
    ("notes", "notes"),
    ("final_kl", "final KL(πθ‖own target), nats"),
    ("kl_at_half_budget", "KL at half budget"),
    ("reach", f"completions to KL ≤ {REACHED_NATS}"),
    ("train_seconds", "training s"),
    ("basic", "basic r"),
    ("addon", "add-on r_R"),
    ("total", "total"),
]


# The summary table (quoted in README): the columns a reader compares first.
SUMMARY_COLUMNS = [
    ("contender", "contender"),
    ("target", "target (ω', α̂)"),
    ("final_kl", "final KL(πθ‖own target), nats"),
    ("reach", f"completions to KL ≤ {REACHED_NATS}"),
    ("train_seconds", "training s"),
    ("total", "total reward"),
]


def table_rows(results: dict) -> list[dict]:
    """One row per contender (mean over seeds), in the results' order."""
    budget = results["settings"]["completions"]
    rows = []
    for key, entry in results["contenders"].items():
        s = contender_summary(entry, budget)
        final = _final_kl(s) + f" (n={len(s['seeds'])})"
        if s["final_kl_max_stderr"] > 0:
            final += f", MC s.e. ≤ {s['final_kl_max_stderr']:.3f}"
        reach = "not reached" if s["completions_to_reach"] is None else f"{s['completions_to_reach']:,}"
        rows.append(
            {
                "key": key,
                "contender": entry["label"],
                "trainer": entry["trainer"],
                "family": entry["family"],
                "target": _target_text(entry["family"], entry["omega_prime"], entry["alpha_hat"]),
                "notes": entry["notes"],
                "final_kl": final,
                "reach": reach,
                **{k: s[k] for k in ("kl_at_half_budget", "train_seconds", "basic", "addon", "total")},
                "summary": s,
            }
        )
    return rows


def target_rows(results: dict) -> list[dict]:
    """One row per exact target: its expected rewards (dynamic programming), KL 0 to itself."""
    return [
        {
            "contender": f"exact target: {FAMILY_NAMES[family]}",
            "trainer": "—",
            "target": _target_text(family, t["omega_prime"], t["alpha_hat"]),
            "notes": "π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂), exact (dynamic programming)",
            "final_kl": "0",
            **{k: t[k] for k in ("basic", "addon", "total")},
        }
        for family, t in results["targets"].items()
    ]


def _final_kl(s: dict) -> str:
    """Mean ± std over seeds; one seed has no spread to show."""
    if len(s["seeds"]) == 1:
        return f"{s['final_kl_mean']:.3f}"
    return f"{s['final_kl_mean']:.3f} ± {s['final_kl_std']:.3f}"


def _contender_finding(row: dict) -> str:
    s = row["summary"]
    kl = f"final KL {_final_kl(s)} nats" + (" (one seed)" if len(s["seeds"]) == 1 else "")
    if s["final_kl_mean"] <= REACHED_NATS:
        first = f"first within {REACHED_NATS} at {s['completions_to_reach']:,} completions"
        verdict = f"reaches its target ({kl} ≤ {REACHED_NATS}; {first})"
    else:
        half = f"{s['kl_at_half_budget']:.3f} at half the budget"
        verdict = f"does not reach its target in this budget ({kl} > {REACHED_NATS}; {half})"
    if s["previous_kl_mean"] is None:
        trend = "one curve point only"
    else:
        drop, last = s["last_drop"], f"{s['previous_kl_mean']:.3f} → {s['final_kl_mean']:.3f}"
        if drop["falling"] is None:
            trend = f"over the last two points {last} (one seed, evaluated exactly: no noise estimate to test the drop)"
        else:
            noise = f"drop {drop['mean']:.3f} ± {drop['stderr']:.3f} {drop['source']}"
            state = "still falling" if drop["falling"] else "flat within noise"
            trend = f"{state} over the last two points ({last}; {noise})"
    return f"**{row['contender']}** {verdict}; {trend}."


def _rewards(values: dict) -> str:
    return f"basic {values['basic']:.3f}, add-on {values['addon']:.3f}, total {values['total']:.3f}"


def _difference(a: dict, b: dict) -> str:
    return ", ".join(
        f"{name} {a[k] - b[k]:+.3f}" for k, name in (("basic", "basic"), ("addon", "add-on"), ("total", "total"))
    )


def _decoupling_findings(rows: list[dict], targets: dict) -> list[str]:
    kl, residual = targets["kl"], targets["residual"]
    residual_name = _target_text("residual", residual["omega_prime"], residual["alpha_hat"])
    kl_name = _target_text("kl", kl["omega_prime"], kl["alpha_hat"])
    lines = [
        f"**What decoupling buys (exact targets):** the {residual_name} target has {_rewards(residual)}; "
        f"the {kl_name} target has {_rewards(kl)}; Residual − KL: {_difference(residual, kl)}."
    ]
    best = {}
    for family in ("residual", "kl"):
        members = [row for row in rows if row["family"] == family]
        best[family] = min(members, key=lambda row: row["summary"]["final_kl_mean"]) if members else None
    if best["residual"] is None or best["kl"] is None:
        absent = " and ".join(FAMILY_NAMES[f] for f, row in best.items() if row is None)
        lines.append(f"**Achieved:** no {absent} contender ran, so there is no trained comparison.")
        return lines
    r, k = best["residual"], best["kl"]
    lines.append(
        f"**What decoupling buys (achieved):** the Residual contender closest to its target, {r['contender']} "
        f"(final KL {r['summary']['final_kl_mean']:.3f}), reaches {_rewards(r)}; the KL contender closest to its "
        f"target, {k['contender']} (final KL {k['summary']['final_kl_mean']:.3f}), reaches {_rewards(k)}; "
        f"Residual − KL: {_difference(r, k)}."
    )
    return lines


def findings(results: dict) -> list[str]:
    """The report's findings, one line each, generated from the results."""
    rows = table_rows(results)
    return [_contender_finding(row) for row in rows] + _decoupling_findings(rows, results["targets"])


def markdown(results: dict, facts: dict) -> str:
    """The whole ``oracle_benchmark.md``: what it measures, the table, the findings, provenance."""
    settings, world = results["settings"], results["world"]
    lines = [
        "# Exact-oracle benchmark: RLHF trainers against the exact optimum of their own objective",
        "",
        f"Toy token world ({world['vocab_size']} words, completions of {world['completion_length']}, "
        f"{world['num_prompts']} prompts). Each contender starts from the distilled prior, samples "
        f"{settings['completions']:,} completions in all (the equal budget; `<pad>`/`<eos>` never sampled) and is "
        "scored by KL(πθ ‖ its own exact target π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂)) at "
        f"{settings['evaluations'] + 1} evenly spaced points. Training seconds exclude evaluation. Mean ± std over "
        "seeds; rewards are the final model's expected basic r, add-on r_R and their sum. "
        "See docs/llm_oracle_benchmark.md.",
        "",
        markdown_table(table_rows(results) + target_rows(results), COLUMNS),
        "",
        "Summary (the same numbers, fewer columns):",
        "",
        markdown_table(table_rows(results) + target_rows(results), SUMMARY_COLUMNS),
        "",
        "## Findings",
        "",
        *(f"- {line}" for line in findings(results)),
        "",
    ]
    if results["missing"]:
        lines += [f"Runs not in the cache (left out): {', '.join(results['missing'])}.", ""]
    lines += [
        f"![KL to own target]({NAME}.png)",
        "",
        "Provenance: " + ", ".join(f"{k}={v}" for k, v in facts.items()),
        "",
    ]
    return "\n".join(lines)


def plot(results: dict) -> bytes:
    """Two panels (KL to own target, log y, against completions and against training seconds) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    colors = plt.get_cmap("tab20").colors
    styles = {"residual": "-", "kl": "--"}  # one target per line style
    for index, row in enumerate(table_rows(results)):
        s = row["summary"]
        floor = 1e-6  # log axis: an exact 0 is drawn at the floor
        mean, low, high = (np.maximum(np.array(s[k]), floor) for k in ("kl_mean", "kl_min", "kl_max"))
        for axis, x in zip(axes, (s["completions"], s["seconds_mean"])):
            color, style = colors[(2 * index) % 20 + (index >= 10)], styles.get(row["family"], ":")
            axis.plot(x, mean, style, color=color, marker="o", markersize=3, label=row["contender"])
            axis.fill_between(x, low, high, color=color, alpha=0.15)
    for axis, xlabel in zip(axes, ("completions sampled", "training wall seconds (evaluation excluded)")):
        axis.set_yscale("log")
        axis.axhline(REACHED_NATS, color="gray", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("KL(πθ ‖ own exact target), nats")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Exact-oracle benchmark: mean over seeds, shaded min–max (solid: Residual target, dashed: KL target)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_report(results: dict, results_dir: str | Path, facts: dict) -> tuple[Path, Path, Path]:
    """``oracle_benchmark.md``, ``.json`` and ``.png`` under ``results_dir``, each written atomically."""
    rows = table_rows(results)
    payload = {
        "provenance": facts,
        **results,
        "table": rows + target_rows(results),
        "findings": findings(results),
    }
    md_path, json_path = write_result_files(results_dir, NAME, markdown(results, facts), payload)
    png_path = Path(results_dir) / f"{NAME}.png"
    write_bytes_atomic(png_path, plot(results))
    return md_path, json_path, png_path
