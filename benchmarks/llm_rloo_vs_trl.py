"""Time per iteration and peak memory: rpg's Residual RLOO vs TRL 1.16's RLOOTrainer, and rpg's rloo vs gae.

    python benchmarks/llm_rloo_vs_trl.py [--iterations 10] [--repeats 3]

Both sides run in this environment (trl 1.16 is installed here), each in its own process, one thread,
alternating: ``rpg-rloo`` (ResidualPPOTrainer, ``advantage_estimator=rloo``), ``trl-rloo`` (TRL's RLOOTrainer)
and ``rpg-gae`` (the same rpg run with a critic, to measure the critic's share of memory). Equal settings:
the tiny Llama policy and reward model of benchmarks/llm_ppo_vs_trl.py, k completions for each of P prompts
per step, the same response length, β = ω' = α̂, one optimizer step per rollout (TRL: ``num_iterations=1``,
one generation batch per step), micro-batches of the same size, no gradient checkpointing, fp32 on CPU.
Reports per side the median time per iteration of each run after ``--warmup`` iterations and each side's
best run (as timeit does; the machine is shared), CPU time, peak RSS over the post-import baseline, and
the trainable parameter count, into ``benchmarks/results/llm_rloo_vs_trl.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMPLS = ("rpg-rloo", "trl-rloo", "rpg-gae")


def run_worker(impl: str, assets: Path, settings: dict) -> dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable,
        str(HERE / "llm_rloo_worker.py"),
        "--impl",
        impl,
        "--assets",
        str(assets),
        "--settings",
        json.dumps(settings),
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{impl} worker failed:\n{out.stderr[-3000:]}")


def summarize(results: list[dict], warmup: int) -> dict:
    per_run_wall = [statistics.median(r["iteration_seconds"][warmup:]) for r in results]
    per_run_cpu = [statistics.median(r["iteration_cpu_seconds"][warmup:]) for r in results]
    return {
        # Best run = least disturbed by other jobs on a shared machine (as timeit takes the minimum).
        "best_run_median_seconds_per_iteration": min(per_run_wall),
        "best_run_median_cpu_seconds_per_iteration": min(per_run_cpu),
        "per_run_median_seconds": per_run_wall,
        "per_run_median_cpu_seconds": per_run_cpu,
        "median_seconds_per_iteration": statistics.median(t for r in results for t in r["iteration_seconds"][warmup:]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "training_peak_rss_mib": max(r["peak_rss_mib"] - r["rss_after_imports_mib"] for r in results),
        "trainable_parameters": results[0]["trainable_parameters"],
    }


def ratios(summary: dict) -> dict:
    rpg, trl, gae = summary["rpg-rloo"], summary["trl-rloo"], summary["rpg-gae"]
    wall, cpu, pooled = (
        "best_run_median_seconds_per_iteration",
        "best_run_median_cpu_seconds_per_iteration",
        "median_seconds_per_iteration",
    )
    return {
        "time_rpg_rloo_over_trl_rloo": rpg[wall] / trl[wall],
        "cpu_time_rpg_rloo_over_trl_rloo": rpg[cpu] / trl[cpu],
        "time_pooled_medians_rpg_rloo_over_trl_rloo": rpg[pooled] / trl[pooled],
        "training_peak_rss_rpg_rloo_over_trl_rloo": rpg["training_peak_rss_mib"] / trl["training_peak_rss_mib"],
        "total_peak_rss_rpg_rloo_over_trl_rloo": rpg["peak_rss_mib"] / trl["peak_rss_mib"],
        "training_peak_rss_rloo_over_gae": rpg["training_peak_rss_mib"] / gae["training_peak_rss_mib"],
        "total_peak_rss_rloo_over_gae": rpg["peak_rss_mib"] / gae["peak_rss_mib"],
        "critic_share_of_gae_trainable_parameters": 1 - rpg["trainable_parameters"] / gae["trainable_parameters"],
        "time_rloo_over_gae": rpg[wall] / gae[wall],
        "cpu_time_rloo_over_gae": rpg[cpu] / gae[cpu],
        # the median run's CPU time: less sensitive than the best run to one quiet (or disturbed) run
        "cpu_time_median_run_rpg_rloo_over_trl_rloo": statistics.median(rpg["per_run_median_cpu_seconds"])
        / statistics.median(trl["per_run_median_cpu_seconds"]),
        "cpu_time_median_run_rloo_over_gae": statistics.median(rpg["per_run_median_cpu_seconds"])
        / statistics.median(gae["per_run_median_cpu_seconds"]),
    }


def markdown(payload: dict) -> str:
    s, r = payload["summary"], payload["ratios"]
    lines = [
        "# Residual RLOO (rpg) vs TRL 1.16 RLOOTrainer, and rpg rloo vs gae",
        "",
        f"Settings: {json.dumps(payload['settings'])}",
        f"Assets: {json.dumps(payload['assets'])}",
        "",
        "| side | s / iteration (best run) | CPU s / iteration | training peak RSS MiB | total peak RSS MiB "
        "| trainable params |",
        "|---|---|---|---|---|---|",
    ]
    for impl in IMPLS:
        x = s[impl]
        wall, cpu = x["best_run_median_seconds_per_iteration"], x["best_run_median_cpu_seconds_per_iteration"]
        lines.append(
            f"| {impl} | {wall:.3f} | {cpu:.3f} | {x['training_peak_rss_mib']:.1f} | {x['peak_rss_mib']:.1f} "
            f"| {x['trainable_parameters']:,} |"
        )
    lines += [
        "",
        f"- time rpg rloo / TRL rloo: **{r['time_rpg_rloo_over_trl_rloo']:.2f}×** wall (best runs), "
        f"{r['cpu_time_rpg_rloo_over_trl_rloo']:.2f}× CPU, "
        f"{r['time_pooled_medians_rpg_rloo_over_trl_rloo']:.2f}× pooled medians, "
        f"{r['cpu_time_median_run_rpg_rloo_over_trl_rloo']:.2f}× CPU of the median run (target ≤ 0.8×)",
        f"- peak memory rpg rloo / TRL rloo: {r['training_peak_rss_rpg_rloo_over_trl_rloo']:.2f}× training peak RSS, "
        f"{r['total_peak_rss_rpg_rloo_over_trl_rloo']:.2f}× total",
        f"- rpg rloo / rpg gae: {r['training_peak_rss_rloo_over_gae']:.2f}× training peak RSS, "
        f"{r['total_peak_rss_rloo_over_gae']:.2f}× total, {r['time_rloo_over_gae']:.2f}× wall time, "
        f"{r['cpu_time_rloo_over_gae']:.2f}× CPU time; the critic is "
        f"{100 * r['critic_share_of_gae_trainable_parameters']:.0f}% of gae's trainable parameters",
        "",
        payload["note"],
        "",
        "Provenance: " + ", ".join(f"{k}={v}" for k, v in payload["provenance"].items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--response_length", type=int, default=24)
    parser.add_argument("--output", default=str(HERE / "results" / "llm_rloo_vs_trl.json"))
    cli = parser.parse_args(argv)
    if cli.iterations <= cli.warmup:
        parser.error("--iterations must exceed --warmup")
    sys.path[:0] = [str(ROOT), str(HERE)]
    from llm_ppo_vs_trl import build_assets

    from rpg.utils.atomic import write_json_atomic, write_text_atomic
    from rpg.utils.provenance import provenance

    settings = dict(
        beta=0.05,
        num_generations=4,
        prompts_per_step=8,
        response_length=cli.response_length,
        per_device_train_batch_size=8,
        learning_rate=1e-5,
        iterations=cli.iterations,
        threads=1,
    )
    runs: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(tmp)
        described = build_assets(assets)
        for repeat in range(cli.repeats):
            order = IMPLS[repeat % 3 :] + IMPLS[: repeat % 3]  # each side takes each slot in turn
            for impl in order:
                result = run_worker(impl, assets, settings)
                runs[impl].append(result)
                print(
                    f"{impl}: {statistics.median(result['iteration_seconds'][cli.warmup :]):.3f} s/iteration wall, "
                    f"{statistics.median(result['iteration_cpu_seconds'][cli.warmup :]):.3f} s CPU, "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    summary = {impl: summarize(results, cli.warmup) for impl, results in runs.items()}
    command = [sys.executable, "benchmarks/llm_rloo_vs_trl.py", *(argv if argv is not None else sys.argv[1:])]
    facts = {"seed": 0, "repeats": cli.repeats, "iterations": cli.iterations, "warmup_dropped": cli.warmup}
    payload = {
        "provenance": provenance(command, facts),
        "settings": settings,
        "assets": described,
        "summary": summary,
        "ratios": ratios(summary),
        "target": "rpg rloo time <= 0.8x TRL's RLOOTrainer",
        "note": "One iteration = one rollout of prompts_per_step × num_generations completions and one optimizer "
        "step. TRL scores the sampled tokens again with a no-grad policy forward (old log-probs); rpg keeps "
        "the sampling log-probs. Memory is process RSS on CPU; 'training' = peak RSS minus RSS after "
        "importing the side's stack (both sides run in the same environment).",
        "load_average_at_end": os.getloadavg(),
        "runs": runs,
    }
    output = Path(cli.output)
    write_json_atomic(output, payload)
    write_text_atomic(output.with_suffix(".md"), markdown(payload))
    r = payload["ratios"]
    print(
        f"rpg rloo / TRL rloo: {r['time_rpg_rloo_over_trl_rloo']:.2f}x wall, "
        f"{r['cpu_time_rpg_rloo_over_trl_rloo']:.2f}x CPU, "
        f"{r['training_peak_rss_rpg_rloo_over_trl_rloo']:.2f}x training peak RSS; rloo / gae training peak RSS "
        f"{r['training_peak_rss_rloo_over_gae']:.2f}x -> {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
