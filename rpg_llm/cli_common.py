"""What ``rpg ppo`` and ``rpg dpo`` share: the "toy job or real model" parse, the dataset loader, the error line.

Both commands run one of two jobs behind one TrlParser: without ``--model_name_or_path`` the embedded
default (the toy world, :mod:`rpg_llm.toy`) with its own defaults, else training a real model on
``--dataset_name``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["DATA_FILE_KINDS", "parse_job", "parse_job_and_launch", "load_named_dataset", "error_line"]

# Local data files ``--dataset_name`` may name, by extension -> the ``datasets`` builder that reads them.
DATA_FILE_KINDS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# A directory holding one of these was written by ``save_to_disk`` (a DatasetDict / a Dataset).
SAVED_DATASET_MARKERS = ("dataset_dict.json", "dataset_info.json")


def parse_job_and_launch(dataclass_types: Sequence[type], toy_defaults: dict, argv: list[str], prog: str) -> tuple:
    """(parsed dataclasses, ``accelerate launch`` arguments, argv for the launched job) of ``argv`` (flags and a
    ``--config`` YAML); the toy job's with ``toy_defaults``.

    The first pass tells the jobs apart (is there a ``model_name_or_path``?); the toy job then parses again
    with its embedded defaults, which a YAML ``--config`` and explicit flags still override. TRL's launch keys
    (``num_processes``, ``accelerate_config``, other ``accelerate launch`` options) are split off as in
    ``trl <command>`` (:func:`rpg_llm.launch.split_launch_arguments`); argparse errors are one ValueError line.
    """
    from trl import ModelConfig, TrlParser

    from rpg_llm.launch import split_launch_arguments

    def parse(defaults: dict | None) -> tuple:
        parser = TrlParser(tuple(dataclass_types), prog=prog)
        if defaults:
            parser.set_defaults(**defaults)
        parsed, launch_args, script_argv = split_launch_arguments(parser, argv)
        return tuple(parsed), launch_args, script_argv

    result = parse(None)
    model_args = next(arguments for arguments in result[0] if isinstance(arguments, ModelConfig))
    return parse(toy_defaults) if model_args.model_name_or_path is None else result


def parse_job(dataclass_types: Sequence[type], toy_defaults: dict, argv: list[str], prog: str) -> tuple:
    """The parsed dataclasses of :func:`parse_job_and_launch`."""
    return parse_job_and_launch(dataclass_types, toy_defaults, argv, prog)[0]


def load_named_dataset(script, split: str | None = None, streaming: bool = False):
    """The data ``--dataset_name`` names: a local .json/.jsonl/.csv/.parquet file, a ``save_to_disk`` directory
    or a hub dataset (``--dataset_config``).

    Returns the ``split`` (a ``Dataset``) when one is asked for, else every split (a ``DatasetDict``); a
    single file or saved ``Dataset`` is the split ``script.dataset_train_split``. Bad input: one ValueError line.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    name = script.dataset_name
    if name is None:
        raise ValueError(
            "--dataset_name is required with --model_name_or_path (a hub dataset, a local "
            ".json/.jsonl/.csv/.parquet file or a save_to_disk directory)"
        )
    if os.path.isfile(name):
        kind = DATA_FILE_KINDS.get(os.path.splitext(name)[1])
        if kind is None:
            raise ValueError(f"dataset file {name} must be .json, .jsonl, .csv or .parquet")
        splits = load_dataset(kind, data_files={script.dataset_train_split: name})
    elif os.path.isdir(name) and any(os.path.exists(os.path.join(name, f)) for f in SAVED_DATASET_MARKERS):
        loaded = load_from_disk(name)
        splits = DatasetDict({script.dataset_train_split: loaded}) if isinstance(loaded, Dataset) else loaded
    else:
        try:
            return load_dataset(name, name=script.dataset_config, split=split, streaming=streaming)
        except Exception as error:  # hub / network / format errors: one line
            where = "" if split is None else f" split {split!r}"
            raise ValueError(f"cannot load dataset {name!r}{where}: {str(error).splitlines()[0]}") from None
    if split is None:
        return splits
    if split not in splits:
        raise ValueError(f"dataset has no split {split!r} (splits: {sorted(splits)})")
    return splits[split]


def error_line(prog: str, error: BaseException) -> str:
    """``<prog>: error: <first line of the message>`` (the type's name when the message is empty)."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{prog}: error: {message}"
