"""``rpg control reproduce``: regenerate the paper's Table I, II or III with one command.

    rpg control reproduce --table 2 --envs halfcheetah --scale quick --jobs 1

Plans every run the table needs, runs the missing ones ``--jobs`` at a time (local processes, or
Ray with ``--backend ray``), and writes ``results/mujoco/<scale>/table<N>.md`` with PNG plots.
Killed? Run the same command again: finished runs are skipped, unfinished ones resume. ``--variants``
runs only some of Table I's columns (``--variants soft``: the Soft PPO runs Table II's prior is picked
from). See docs/mujoco_reproduction.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rpg_control.reproduce import paper
from rpg_control.reproduce.pipeline import DEFAULT_RESULTS_ROOT, DEFAULT_RUNS_ROOT, Reproduction
from rpg_control.reproduce.plan import (
    SCALES,
    check_envs,
    check_variants,
    customization_runs,
    full_policy_runs,
    make_scale,
    prior_candidate_runs,
    table1_runs,
    table3_runs,
)
from rpg_control.reproduce.sweep import BACKENDS, DEFAULT_RUNNER, Sweep, import_ray, resolve_runner


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpg control reproduce",
        description="Reproduce the paper's MuJoCo Tables I (entropy variants), II (Residual PPO) or III "
        "(std ablation).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--table", type=int, choices=(1, 2, 3), required=True, help="which table of the paper")
    parser.add_argument(
        "--envs", nargs="+", default=list(paper.ENVS), metavar="ENV", help=f"subset of {', '.join(paper.ENVS)}"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="VARIANT",
        help=f"Table I only: run just these columns ({', '.join(paper.TABLE1_VARIANTS)}); "
        "e.g. --variants soft for the Soft PPO runs Table II's prior is picked from",
    )
    parser.add_argument(
        "--scale",
        choices=tuple(SCALES),
        default="paper",
        help="paper: 5M steps, 5 seeds, 100 episodes per seed; quick: "
        f"{SCALES['quick'].steps:,} steps, {SCALES['quick'].seeds} seeds, {SCALES['quick'].episodes} episodes",
    )
    parser.add_argument("--steps", type=int, help="env steps per training run (overrides the scale)")
    parser.add_argument("--seeds", type=int, help="seeds per variant (overrides the scale)")
    parser.add_argument("--episodes", type=int, help="evaluation episodes per seed (overrides the scale)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="local", help="local processes, or Ray (pip install 'rpg[distributed]')"
    )
    parser.add_argument(
        "--worker-runs-dir",
        default="~/rpg-runs",
        help="Ray: run folders' root on each worker ('~' expands there); the driver gets results, "
        "and Soft PPO runs' best checkpoints, from the tasks, never from worker files",
    )
    parser.add_argument(
        "--ray-address", help="Ray cluster to join ('auto', 'ray://head:10001'); default: RAY_ADDRESS or a local Ray"
    )
    parser.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="ENV=CKPT",
        help="Table II: customize this checkpoint instead of Table I's best Soft PPO run",
    )
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS_ROOT, help="results root (tables, plots, result JSONs)"
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=DEFAULT_RUNS_ROOT, help="run directories (checkpoints, metrics)"
    )
    parser.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests plug a fake runner in here
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the table and plots from finished results"
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-run progress bar")
    return parser


def parse_priors(items: list[str]) -> dict[str, str]:
    priors = {}
    for item in items:
        env, sep, path = item.partition("=")
        if not sep or env not in paper.ENVS:
            raise ValueError(f"--prior must look like ENV=CKPT with ENV in {', '.join(paper.ENVS)}, got {item!r}")
        if not Path(path).is_file():
            raise ValueError(f"--prior {env}: no such checkpoint file {path!r}")
        priors[env] = str(Path(path).resolve())  # explicit: later reads do not depend on the current directory
    return priors


def describe_plan(reproduction: Reproduction) -> list[str]:
    scale, envs, sweep = reproduction.scale, reproduction.envs, reproduction.sweep
    lines = [
        f"Table {reproduction.table}, scale {scale.label}: {scale.describe()}",
        f"  results (tables, result JSONs): {reproduction.out_dir}; run folders: {sweep.runs_dir}",
    ]
    stages = []
    if reproduction.table == 1:
        stages.append(("runs", table1_runs(envs, scale, reproduction.variants)))
    elif reproduction.table == 3:
        stages.append(("runs", table3_runs(envs, scale)))
    else:
        for env in envs:
            prior = reproduction.known_prior(env)
            if prior is None:
                stages.append((f"{env}: Soft PPO runs the prior is picked from", prior_candidate_runs(env, scale)))
                later = len(customization_runs(env, scale, "<prior>", "0")) - 1
                lines.append(
                    f"  {env}: after these, the prior's evaluation and {later} customization runs "
                    "(Greedy/KL/Residual × seeds)"
                )
                stages.append((f"{env}: Full Policy", full_policy_runs(env, scale)))
            else:
                lines.append(f"  {env}: prior {prior['display']}")
                stages.append(
                    (
                        f"{env}: prior row, customizations, Full Policy",
                        customization_runs(env, scale, prior["path"], prior["sha256"]) + full_policy_runs(env, scale),
                    )
                )
    for title, specs in stages:
        specs = sweep.identify(specs)
        lines.append(f"  {title}:")
        for spec in {s.run_id: s for s in specs}.values():
            state = (
                "done" if sweep.result_path(spec).exists() else ("resume" if sweep.run_dir(spec).exists() else "todo")
            )
            lines.append(f"    [{state:>6}] {spec.run_id}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # every check that can fail on bad input, before any simulation starts
        envs = check_envs(args.envs)
        variants = check_variants(args.table, args.variants)
        scale = make_scale(args.scale, args.steps, args.seeds, args.episodes)
        priors = parse_priors(args.prior)
        if args.backend == "ray" and not (args.dry_run or args.report_only):
            import_ray()
        resolve_runner(args.runner)
        sweep = Sweep(
            results_dir=args.results / scale.label / "run_results",  # not "runs/": .gitignore drops that
            runs_dir=args.runs_dir / scale.label,
            runner=args.runner,
            jobs=args.jobs,
            backend=args.backend,
            ray_address=args.ray_address,
            worker_runs_dir=f"{args.worker_runs_dir.rstrip('/')}/{scale.label}",
            progress=not args.no_progress,
            command=shlex.join(["rpg", "control", "reproduce", *argv]),
        )
    except (ValueError, RuntimeError, ImportError) as error:
        print(f"rpg control reproduce: error: {error}", file=sys.stderr)
        return 2
    reproduction = Reproduction(
        table=args.table,
        envs=envs,
        scale=scale,
        sweep=sweep,
        out_dir=args.results / scale.label,
        command=sweep.command,
        priors=priors,
        variants=variants,
    )
    if args.dry_run:
        print("\n".join(describe_plan(reproduction)))
        return 0
    try:
        return reproduction.run(execute=not args.report_only)
    except KeyboardInterrupt:
        print("rpg control reproduce: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
