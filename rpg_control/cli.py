"""``rpg control``: train / customize / eval / reproduce.

    rpg control train --env halfcheetah --variant soft --total-steps 1000000
    rpg control customize --prior runs/control/halfcheetah-soft-s0/checkpoints/best.pt --variant residual
    rpg control eval runs/control/halfcheetah-soft-s0/checkpoints/best.pt --episodes 100
    rpg control plot runs/control/halfcheetah-soft-s0 --output curves.png

Every bad input (unknown env/variant/key, negative coefficient, missing or mismatched prior, …)
is one ``rpg control: error: …`` line and exit code 2, before any simulation starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import yaml

from rpg_control.config import BACKENDS, ENVS, ConfigError
from rpg_control.variants import CUSTOMIZATION_VARIANTS, SCRATCH_VARIANTS

PROG = "rpg control"


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _parse_set(items: list[str]) -> dict:
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return overrides


def _common_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--total-steps", type=int, default=None, help="environment steps (default from the config)")
    parser.add_argument(
        "--run-dir",
        default=None,
        help="output folder (default runs/control/<env>-<variant>-s<seed>); resumes if it holds checkpoints/last.pt",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="native (default, bit-exact v5), gymnasium, or envpool (optional extra, v4 ports)",
    )
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--config", default=None, help="YAML file of config overrides")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field (YAML value), repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MuJoCo: Soft PPO and its entropy variants, customization (Greedy / KL / Residual PPO), "
        "evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help=f"train a policy from scratch ({' / '.join(SCRATCH_VARIANTS)})")
    train.add_argument("--env", required=True, help=f"one of: {', '.join(ENVS)}")
    train.add_argument("--variant", default="soft", help=f"{' | '.join(SCRATCH_VARIANTS)} (Soft PPO on r + r_R)")
    train.add_argument("--alpha", type=float, default=None, help="entropy coefficient α (default: Table IV)")
    _common_training_args(train)
    train.set_defaults(func=_train)

    customize = sub.add_parser(
        "customize", help=f"customize a prior checkpoint on the add-on reward ({' / '.join(CUSTOMIZATION_VARIANTS)})"
    )
    customize.add_argument("--prior", required=True, help="prior checkpoint (best.pt of a soft run)")
    customize.add_argument("--variant", default="residual", help=" | ".join(CUSTOMIZATION_VARIANTS))
    customize.add_argument("--env", default=None, help="default: the prior's env")
    customize.add_argument("--omega-prime", type=float, default=None, help="ω' (default: Table V)")
    customize.add_argument("--alpha-hat", type=float, default=None, help="α̂ (default: Soft PPO's α)")
    _common_training_args(customize)
    customize.set_defaults(func=_customize)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint over N episodes")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean action")
    evaluate.add_argument("--output", default=None, help="JSON file (default: <checkpoint>.eval.json)")
    evaluate.set_defaults(func=_eval)

    export = sub.add_parser(
        "export",
        help="write a slim checkpoint (policy, critic, normalizer, config; no optimizer) for evaluation or as a prior",
    )
    export.add_argument("checkpoint")
    export.add_argument("output")
    export.set_defaults(func=_export)

    plot = sub.add_parser("plot", help="plot learning curves of run folders (metrics.jsonl) to a PNG")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--output", default="learning_curves.png")
    plot.add_argument("--reference", type=float, default=None, help="draw a horizontal reference return")
    plot.add_argument("--reference-label", default="")
    plot.set_defaults(func=_plot)

    sub.add_parser("reproduce", help="reproduce the paper's Tables I-III (rpg_control.reproduce)", add_help=False)
    return parser


def _training_config(args, variant: str, env: str, extra: dict):
    from rpg_control.config import load_config

    overrides: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of config fields")
        overrides.update(loaded)
    overrides.update(_parse_set(args.set))
    flags = {
        "seed": args.seed,
        "total_steps": args.total_steps,
        "backend": args.backend,
        "num_envs": args.num_envs,
        **extra,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(env, variant, overrides)


def _run_training(config, args) -> int:
    from rpg_control.checkpoint import CheckpointPaths
    from rpg_control.train import train
    from rpg_control.train_log import METRICS_FILE

    run_dir = Path(args.run_dir or f"runs/control/{config.env}-{config.variant}-s{config.seed}")
    train(config, run_dir, progress=not args.no_progress)
    checkpoints = CheckpointPaths.of(run_dir).folder
    print(f"run finished: {run_dir} (checkpoints in {checkpoints}, metrics in {run_dir / METRICS_FILE})")
    return 0


def _train(args) -> int:
    if args.variant in CUSTOMIZATION_VARIANTS:
        raise ConfigError(
            f"variant {args.variant!r} customizes a prior: use `{PROG} customize --prior CKPT --variant {args.variant}`"
        )
    if args.variant not in SCRATCH_VARIANTS:
        raise ConfigError(f"unknown variant {args.variant!r}; choose one of: {', '.join(SCRATCH_VARIANTS)}")
    return _run_training(_training_config(args, args.variant, args.env, {"alpha": args.alpha}), args)


def _customize(args) -> int:
    if args.variant not in CUSTOMIZATION_VARIANTS:
        raise ConfigError(f"customize needs one of: {', '.join(CUSTOMIZATION_VARIANTS)}; got {args.variant!r}")
    from rpg_control.checkpoint import load_checkpoint, load_prior

    prior_config = load_checkpoint(args.prior)["config"]
    # The customized actor is the prior's actor: take its architecture.
    extra = {k: prior_config[k] for k in ("actor_hidden", "activation", "std_type", "init_std")}
    extra.update(prior=args.prior, omega_prime=args.omega_prime, alpha_hat=args.alpha_hat)
    config = _training_config(args, args.variant, args.env or prior_config["env"], extra)
    load_prior(config)  # env / size checks before any simulation
    return _run_training(config, args)


def _eval(args) -> int:
    from rpg.utils.atomic import write_json_atomic
    from rpg_control.evaluate import evaluate

    report = evaluate(args.checkpoint, episodes=args.episodes, seed=args.seed, deterministic=not args.stochastic)
    output = Path(args.output or f"{Path(args.checkpoint).with_suffix('')}.eval.json")
    write_json_atomic(output, report)
    for name in ("total", "basic", "addon", "addon_metric"):
        print(f"{name:>13}: {report[name]['mean']:10.2f} ± {report[name]['std']:.2f}")
    print(f"{report['episodes']} episodes; written to {output}")
    return 0


def _export(args) -> int:
    from rpg_control.checkpoint import export_policy

    print(f"written to {export_policy(args.checkpoint, args.output)}")
    return 0


def _plot(args) -> int:
    from rpg_control.plots import plot_runs

    print(f"written to {plot_runs(args.run_dirs, args.output, args.reference, args.reference_label)}")
    return 0


def _reproduce(argv: list[str]) -> int:
    """``rpg control reproduce …``: handed whole to ``rpg_control.reproduce.cli`` (its own parser and flags)."""
    try:
        module = importlib.import_module("rpg_control.reproduce.cli")
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("rpg_control.reproduce"):
            return _error("the reproduction module (rpg_control.reproduce) is not installed in this checkout")
        raise
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "reproduce":  # before parsing: its flags are the reproduction CLI's, not ours
        return _reproduce(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        return _error(str(error))


if __name__ == "__main__":
    sys.exit(main())
