"""``python -m rpg_llm.toy.oracle_benchmark``: run the exact-oracle benchmark and write its report.

    python -m rpg_llm.toy.oracle_benchmark --jobs 2                      # every contender, seeds 0 1 2
    python -m rpg_llm.toy.oracle_benchmark --contenders rpg_ppo_residual rpg_ppo_kl --seeds 0
    python -m rpg_llm.toy.oracle_benchmark --report-only                 # the report from the cached runs

Bad input ends in one ``error:`` line naming the value (exit code 2) before the world is built or any run
starts. Finished runs are cached under ``--runs-dir`` and skipped on a rerun (docs/llm_oracle_benchmark.md).
"""

from __future__ import annotations

import argparse
import sys
import time

from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings
from rpg_llm.toy.world import ToyWorldArguments

DEFAULT_SETTINGS = BenchmarkSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rpg_llm.toy.oracle_benchmark",
        description="RLHF trainers scored by KL to the exact optimum of their own objective on the toy world.",
    )
    parser.add_argument("--contenders", nargs="+", metavar="KEY", help="contender keys (default: every registered)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each (default: 1)")
    parser.add_argument("--completions", type=int, default=DEFAULT_SETTINGS.completions, help="completions per run")
    parser.add_argument("--evaluations", type=int, default=DEFAULT_SETTINGS.evaluations, help="curve points after 0")
    parser.add_argument("--results-dir", default="results/llm", help="where oracle_benchmark.md/.json/.png go")
    parser.add_argument("--runs-dir", default="runs/oracle_benchmark", help="cache of finished runs")
    parser.add_argument("--report-only", action="store_true", help="write the report from cached runs; run nothing")
    world = parser.add_argument_group("world", "the toy world (default: the embedded job's, 8 words × 4 tokens)")
    for name in WORLD_FIELDS:
        spec = ToyWorldArguments.__dataclass_fields__[name]
        flag = "--" + name.replace("_", "-")
        world.add_argument(flag, type=_field_type(spec), default=spec.default, help=spec.metadata.get("help"))
    return parser


# ToyWorldArguments' fields that name a world: a larger one (e.g. 64 words × 16 tokens) is scored by Monte Carlo
WORLD_FIELDS = (
    "world_vocab_size",
    "world_completion_length",
    "world_num_prompts",
    "world_seed",
    "world_distill_steps",
    "world_cache_dir",
)


def _field_type(spec):
    return str if spec.default is None else type(spec.default)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, BenchmarkSettings, list[str]]:
    """(arguments, settings, contender keys); every bad value is one ``parser.error`` line, before any work."""
    from rpg_llm.toy.oracle_benchmark.registry import all_contenders

    parser = build_parser()
    args = parser.parse_args(argv)
    registered = list(all_contenders())
    keys = args.contenders or registered
    unknown = [key for key in keys if key not in registered]
    if unknown:
        parser.error(f"unknown contender {', '.join(unknown)}; choose from {', '.join(registered)}")
    if len(set(keys)) != len(keys):
        parser.error(f"contender listed twice: {', '.join(sorted({k for k in keys if keys.count(k) > 1}))}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(
            f"seed listed twice: {' '.join(str(s) for s in sorted({s for s in args.seeds if args.seeds.count(s) > 1}))}"
        )
    negative = [s for s in args.seeds if s < 0]
    if negative:
        parser.error(f"seeds must be >= 0, got {' '.join(map(str, negative))}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        settings = BenchmarkSettings(completions=args.completions, evaluations=args.evaluations)
    except ValueError as error:
        parser.error(str(error))
    if args.evaluations > args.completions:
        parser.error(f"--evaluations ({args.evaluations}) must be <= --completions ({args.completions})")
    try:  # ToyWorldConfig names the bad field and value
        args.world = ToyWorldArguments(**{name: getattr(args, name) for name in WORLD_FIELDS})
    except ValueError as error:
        parser.error(str(error))
    return args, settings, keys


def main(argv: list[str] | None = None) -> int:
    from rpg.utils.provenance import provenance
    from rpg_llm.toy.oracle_benchmark.harness import load_results, run_benchmark, run_folder
    from rpg_llm.toy.oracle_benchmark.report import collect, write_report
    from rpg_llm.toy.world import ToyWorld

    argv = sys.argv[1:] if argv is None else list(argv)
    args, settings, keys = parse_args(argv)
    started = time.perf_counter()
    world = ToyWorld.build(args.world.world_config(), args.world.world_cache_dir)  # once, before any worker starts
    folder = run_folder(args.runs_dir, settings, world)
    failed = None
    if not args.report_only:
        try:
            run_benchmark(keys, args.seeds, settings, world, args.runs_dir, jobs=args.jobs)
        except RuntimeError as error:  # some runs failed: the others are cached and still reported
            failed = error
            print(f"error: {error}", file=sys.stderr)
    runs, missing = load_results(folder, keys, args.seeds)
    if not runs:
        print(f"error: no finished runs under {folder} for these contenders and seeds", file=sys.stderr)
        return 2
    facts = provenance(
        ["python -m rpg_llm.toy.oracle_benchmark", *argv],
        {
            "run_folder": str(folder),
            "jobs": args.jobs,
            "wall_seconds": round(time.perf_counter() - started, 1),
            # the commits the cached runs were made at (a --report-only render may postdate them)
            "run_commits": sorted({(r.get("provenance") or {}).get("commit") or "not recorded" for r in runs}),
        },
    )
    paths = write_report(collect(runs, settings, world, missing), args.results_dir, facts)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
