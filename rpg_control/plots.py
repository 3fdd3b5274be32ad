"""Learning curves from ``metrics.jsonl``: returns (basic, add-on, total) and the add-on metric vs env steps."""

from __future__ import annotations

import json
from pathlib import Path

from rpg_control.config import ConfigError
from rpg_control.train_log import METRICS_FILE


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ConfigError(f"no {METRICS_FILE} in {run_dir}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_runs(
    run_dirs: list[str | Path], output: str | Path, reference: float | None = None, reference_label: str = ""
) -> Path:
    """One figure, two panels: episode returns and the add-on metric of each run vs env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(Path(d), read_metrics(d)) for d in run_dirs]  # read all first: bad input fails before drawing
    fig, (returns_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run_dir, rows in runs:
        rows = [r for r in rows if r.get("episode_return_basic") is not None]
        steps = [r["step"] for r in rows]
        name = run_dir.name
        returns_ax.plot(steps, [r["episode_return_basic"] for r in rows], label=f"{name}: basic r")
        returns_ax.plot(steps, [r["episode_return_total"] for r in rows], "--", label=f"{name}: total r + r_R")
        metric_ax.plot(steps, [r["addon_metric"] for r in rows], label=name)
    if reference is not None:
        returns_ax.axhline(reference, color="gray", linestyle=":", label=reference_label or f"reference {reference:g}")
    returns_ax.set(xlabel="env steps", ylabel="episode return (training policy)", title="returns")
    metric_ax.set(xlabel="env steps", ylabel="episode mean", title="add-on metric")
    returns_ax.legend(fontsize=7)
    metric_ax.legend(fontsize=7)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
