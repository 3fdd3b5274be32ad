"""``rpg dpo``: flags and ``--config`` as in ``trl dpo``, ``--loss`` alias, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from rpg import cli as rpg_cli
from rpg_llm.dpo import cli as dpo_cli

from ..tiny_lm import build_tiny_causal_lm, random_preference_dataset


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("cli_model") / "model")


def write_jsonl(path, dataset):
    path.write_text("\n".join(json.dumps(row) for row in dataset.to_list()) + "\n")
    return path


def train_flags(model_dir, data_file, output_dir, *extra):
    return [
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(data_file),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--gradient_checkpointing",
        "false",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        *extra,
    ]


def test_loss_alias_and_yaml_config(tmp_path):
    config = tmp_path / "dpo.yaml"
    config.write_text(
        "loss_type: [decoupled, sigmoid]\nloss_weights: [1.0, 0.5]\nalpha_hat: 0.2\nomega_prime: 0.3\n"
        "model_name_or_path: some/model\n"
    )
    _, args, model_args, _, _ = dpo_cli.parse(["--config", str(config), "--omega_prime", "0.4", "--output_dir", "x"])
    assert (args.loss_type, args.loss_weights, args.alpha_hat, args.omega_prime) == (
        ["decoupled", "sigmoid"],
        [1.0, 0.5],
        0.2,
        0.4,
    )
    assert model_args.model_name_or_path == "some/model"
    _, args, *_ = dpo_cli.parse(["--model_name_or_path", "m", "--loss", "ce", "decoupled", "--output_dir", "x"])
    assert args.loss_type == ["ce", "decoupled"]
    _, args, *_ = dpo_cli.parse(["--model_name_or_path", "m", "--loss=ce", "--output_dir", "x"])
    assert args.loss_type == ["ce"]


def test_no_model_selects_the_toy_defaults():
    _, args, model_args, _, toy = dpo_cli.parse([])
    assert model_args.model_name_or_path is None
    assert (args.beta, args.alpha_hat, args.omega_prime) == (0.5, 0.5, 1.0)
    assert args.learning_rate == dpo_cli.TOY_DEFAULTS["learning_rate"] and toy.methods == ["dpo", "decoupled", "ce"]
    _, args, _, _, toy = dpo_cli.parse(["--max_steps", "7", "--methods", "decoupled"])
    assert args.max_steps == 7 and toy.methods == ["decoupled"]


@pytest.mark.slow
def test_rpg_dpo_trains_a_local_model_with_lora(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", random_preference_dataset(8, with_labels=True))
    flags = train_flags(
        model_dir,
        data,
        tmp_path / "out",
        "--loss",
        "decoupled",
        "ce",
        "--loss_weights",
        "1.0",
        "0.5",
        "--alpha_hat",
        "0.2",
        "--omega_prime",
        "0.1",
        "--use_peft",
        "--lora_r",
        "4",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
    )
    assert rpg_cli.main(["dpo", *flags]) == 0
    assert (tmp_path / "out" / "adapter_config.json").exists()


@pytest.mark.parametrize(
    "edit,flags,message",
    [
        (lambda ds: ds.remove_columns("rejected"), [], "train_dataset lacks column(s) ['rejected']"),
        (lambda ds: ds.map(lambda row: {"label": 2.0}), ["--loss", "ce"], "column 'label' must lie in [0, 1]"),
        (lambda ds: ds, ["--loss", "decoupled", "--alpha_hat", "0"], "alpha_hat must be a finite number > 0"),
        (lambda ds: ds, ["--loss", "decoupled", "--alpha_hat", "-0.5"], "alpha_hat must be a finite number > 0"),
    ],
)
def test_bad_input_is_one_error_line(model_dir, tmp_path, capsys, edit, flags, message):
    data = write_jsonl(tmp_path / "pairs.jsonl", edit(random_preference_dataset(8, with_labels=True)))
    assert rpg_cli.main(["dpo", *train_flags(model_dir, data, tmp_path / "out", *flags)]) == 2
    err = capsys.readouterr().err
    # datasets may draw its progress bars on stderr first; the error itself is exactly one last line
    assert "Traceback" not in err and err.count("rpg dpo: error: ") == 1
    assert err.strip().splitlines()[-1].startswith("rpg dpo: error: ") and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_missing_dataset_is_one_error_line(model_dir, tmp_path, capsys):
    assert dpo_cli.main(["--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dataset_name is required" in err[0]
