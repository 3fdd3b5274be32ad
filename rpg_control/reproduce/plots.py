"""PNG plots of a reproduction: learning curves (mean and spread over seeds) and Table II's
basic-vs-add-on trade-off (one point per method, ours beside the paper's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rpg_control.reproduce import paper

COLORS = {
    "none": "tab:gray",
    "end": "tab:orange",
    "repeat": "tab:purple",
    "soft": "tab:blue",
    "prior": "black",
    "greedy": "tab:red",
    "kl": "tab:green",
    "residual": "tab:blue",
    "full": "tab:brown",
    "global": "tab:blue",
    "state": "tab:orange",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    from rpg.utils.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


def seed_band(
    curves: list[list[dict]], key: str, points: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over seeds of ``key`` against env steps, each seed interpolated on one grid.

    The grid spans the steps every seed has reached, so the band never extrapolates a seed.
    """
    series = []
    for curve in curves:
        rows = [(row["step"], row[key]) for row in curve if row.get(key) is not None and np.isfinite(row[key])]
        if len(rows) >= 2:
            series.append(np.asarray(rows, dtype=float).T)
    if not series:
        return None
    start = max(s[0][0] for s in series)
    stop = min(s[0][-1] for s in series)
    if stop <= start:
        return None
    grid = np.linspace(start, stop, points)
    values = np.stack([np.interp(grid, steps, value) for steps, value in series])
    return grid, values.mean(axis=0), values.std(axis=0)


def learning_curves(path: Path, envs, groups: dict, titles: dict, key: str, ylabel: str, title: str) -> None:
    """``groups[env][label]`` = list of per-seed curves (rows of metrics.jsonl)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for label, curves in groups.get(env, {}).items():
            band = seed_band(curves, key)
            if band is None:
                continue
            grid, mean, std = band
            color = COLORS.get(label)
            ax.plot(
                grid, mean, color=color, label=f"{titles[label]} ({len(curves)} seed{'s' if len(curves) != 1 else ''})"
            )
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_title(paper.ENV_TITLES[env])
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{title} — mean ± std over seeds of the training episode return")
    _save(fig, path)
    plt.close(fig)


def tradeoff(path: Path, envs, ours: dict, scale_label: str) -> None:
    """Basic (x) vs add-on (y) reward per method: ours (left) and the paper's (right), per env."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(envs), 2, figsize=(10, 4 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        theirs = {
            p: {"basic": paper.TABLE2[env][p][1], "addon": paper.TABLE2[env][p][3]} for p in paper.TABLE2_POLICIES
        }
        for ax, figures, source in (
            (axes[row][0], ours[env], f"ours ({scale_label})"),
            (axes[row][1], theirs, "paper (5M steps, 5 seeds)"),
        ):
            for policy in paper.TABLE2_POLICIES:
                basic, addon = figures[policy]["basic"], figures[policy]["addon"]
                if basic is None or addon is None:
                    continue
                ax.errorbar(
                    basic[0],
                    addon[0],
                    xerr=basic[1],
                    yerr=addon[1],
                    fmt="o",
                    color=COLORS[policy],
                    capsize=3,
                    label=paper.TABLE2_TITLES[policy],
                )
            ax.set_title(f"{paper.ENV_TITLES[env]} — {source}")
            ax.set_xlabel("basic reward")
            ax.set_ylabel(f"add-on reward ({paper.ADDON_METRIC_TITLES[env]})")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Table II trade-off: basic vs add-on reward (up and right is better; mean ± std)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
