"""How ``rpg ppo`` / ``rpg dpo`` are started on N processes, and one clear line when a launch is wrong.

* TRL's CLI accepts ``num_processes`` and ``accelerate_config`` (a file, or a name of TRL's shipped
  configs: ``multi_gpu``, ``zero2``, ``zero3``, ``fsdp2`` …) as YAML keys or flags, and re-runs the
  script under ``accelerate launch`` with them. :func:`split_launch_arguments` and
  :func:`relaunch_with_accelerate` do the same here; the relaunched processes ignore those keys.
* ``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPUs starts two processes
  that each see one process (no process group): both would run the whole job and write the same
  results. :func:`check_world_size` stops such a launch before any work.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["check_world_size", "split_launch_arguments", "relaunch_with_accelerate", "LAUNCHED_ENV"]

# Set in the environment of the processes this module starts, so they do not launch again.
LAUNCHED_ENV = "RPG_LAUNCHED_BY_ACCELERATE"

CPU_LAUNCH = "torchrun --nproc_per_node {n} $(which rpg) {command} ... --use_cpu true"
GPU_LAUNCH = "accelerate launch --num_processes {n} $(which rpg) {command} ..."


def check_world_size(num_processes: int, command: str = "ppo") -> None:
    """Refuse a launch whose environment says WORLD_SIZE > 1 while this process sees one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world_size > 1 and num_processes == 1:
        raise ValueError(
            f"WORLD_SIZE={world_size} but this process sees 1 process (no process group: `accelerate launch "
            f"--multi_gpu` on a machine without GPUs?); launch on CPUs with "
            f"`{CPU_LAUNCH.format(n=world_size, command=command)}`"
            f", on GPUs with `{GPU_LAUNCH.format(n=world_size, command=command)}`"
        )


def _launch_options() -> tuple[set[str], set[str]]:
    """(every option of ``accelerate launch``, its on/off flags such as ``--cpu``)."""
    from accelerate.commands.launch import launch_command_parser

    actions = launch_command_parser()._actions
    options = {option for action in actions for option in action.option_strings}
    # store_true options (accelerate wraps argparse's action class, so ask the action, not its type)
    flags = {
        option for action in actions if action.nargs == 0 and action.const is True for option in action.option_strings
    }
    return options, flags


def _yaml_flags_to_switches(arguments: list[str], flags: set[str]) -> list[str]:
    """A YAML ``cpu: true`` arrives as ``--cpu True``; accelerate wants ``--cpu`` (and nothing for false)."""
    result, index = [], 0
    while index < len(arguments):
        argument = arguments[index]
        value = arguments[index + 1] if index + 1 < len(arguments) else None
        if argument in flags and value is not None and value.lower() in ("true", "false"):
            result += [argument] if value.lower() == "true" else []
            index += 2
        else:
            result.append(argument)
            index += 1
    return result


def _already_launched() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1" or "LOCAL_RANK" in os.environ


def split_launch_arguments(parser, argv: list[str]):
    """Parse ``argv``; returns (dataclasses, launch_args, script_argv).

    ``launch_args`` are the arguments (from the YAML ``--config`` or the command line) that are no
    field of the parser's dataclasses but options of ``accelerate launch``: TRL's ``num_processes``,
    ``accelerate_config`` (resolved to ``--config_file``), ``num_machines`` … Anything else unknown is
    one error line. Inside a launched process (or under torchrun) they are dropped: the launcher used them.
    """
    parser.error = _raise_value_error  # argparse's usage + message + exit becomes the CLI's one error line
    *parsed, config_rest, cli_rest = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    options, flags = _launch_options()
    rest = _yaml_flags_to_switches(list(config_rest), flags) + list(cli_rest)
    if not rest:
        return parsed, [], argv
    options = options | {"--accelerate_config"}
    unknown = [arg for arg in rest if arg.startswith("-") and arg.split("=")[0] not in options]
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}: neither a training option nor an `accelerate launch` option")
    for index, argument in enumerate(rest):  # a bare word must be the value of the option before it
        previous = rest[index - 1] if index else ""
        if not argument.startswith("-") and (not previous.startswith("-") or previous in flags or "=" in previous):
            raise ValueError(f"unexpected argument {argument!r}")
    if _already_launched():
        return parsed, [], argv
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    launch_args = resolve_accelerate_config_argument(rest)
    return parsed, launch_args, _subtract_subsequence(argv, list(cli_rest))


def _raise_value_error(message: str):
    raise ValueError(message)


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    remaining, position = [], 0
    for item in items:
        if position < len(subsequence) and item == subsequence[position]:
            position += 1
        else:
            remaining.append(item)
    return remaining


def relaunch_with_accelerate(module: str, launch_args: list[str], script_argv: list[str], launch=None) -> int:
    """Run ``python -m module script_argv`` under ``accelerate launch launch_args``; its exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch = launch or launch_command
    arguments = launch_command_parser().parse_args([*launch_args, "--module", module, *script_argv])
    os.environ[LAUNCHED_ENV] = "1"
    try:
        launch(arguments)
    except subprocess.CalledProcessError as error:  # the processes printed their own error line
        return error.returncode or 1
    finally:
        os.environ.pop(LAUNCHED_ENV, None)
    return 0


def cli_module_name(module_name: str, module_file: str) -> str:
    """The importable name of a CLI module (``__main__`` when run as a file is turned back into it)."""
    if module_name != "__main__":
        return module_name
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    raise ValueError(f"run {module_file} as a module (python -m ...) to launch it on several processes")
