"""The ``rpg`` console command.

Each subcommand lives with its domain and is imported only when it runs, so ``rpg --help``
is instant and needs neither the LLM nor the MuJoCo stack installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, function, one-line help). Each function takes the remaining argv.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "ppo": ("rpg_llm.ppo.cli", "main", "Residual PPO on a causal LM (r_R + ω'·log π_ref − α̂·log πθ per token)"),
    "dpo": ("rpg_llm.dpo.cli", "main", "DPO, decoupled DPO and the implicit-reward CE loss on TRL's DPOTrainer"),
    "control": ("rpg_control.cli", "main", "MuJoCo: train / customize / eval / reproduce (Soft and Residual PPO)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpg",
        description="Residual Policy Gradient: one reward theory for language models and MuJoCo control.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(SUBCOMMANDS)}")
        parser.parse_args(argv)  # handles --help / -h
        parser.print_help()
        return 0 if not argv else 2
    module_name, function_name, _ = SUBCOMMANDS[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        extra = "llm" if module_name.startswith("rpg_llm") else "control"
        print(
            f"rpg {argv[0]}: missing dependency ({error.name}); install with: pip install 'rpg[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return int(getattr(module, function_name)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
