"""The table of bad inputs of ``rpg ppo`` and ``rpg dpo``: each one is exactly one ``rpg <cmd>: error:`` line
naming the bad value, exit code 2, no traceback.

The CLIs run in-process (``main(argv)``) so the whole table stays fast; a few end-to-end runs in a
subprocess check the real exit code. Most cases fail while parsing or before any model loads; the
reward cases (±inf / NaN from a function or a reward model) fail in the first rollout of a tiny model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rpg_llm.dpo import cli as dpo_cli
from rpg_llm.dpo import trainer as dpo_trainer
from rpg_llm.ppo import cli as ppo_cli
from rpg_llm.toy.tiny_llama import tiny_llama_config, word_tokenizer

from .tiny_lm import SPECIAL_TOKENS, build_tiny_causal_lm, random_preference_dataset

REWARDS_MODULE = textwrap.dedent(
    """
    def good(prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]

    def wrong_signature(completions):
        return [0.0 for _ in completions]

    def returns_inf(prompts, completions, **kwargs):
        return [float("inf")] + [0.0] * (len(completions) - 1)

    def returns_minus_inf(prompts, completions, **kwargs):
        return [float("-inf")] * len(completions)

    def returns_nan(prompts, completions, **kwargs):
        return [float("nan")] * len(completions)
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    build_tiny_causal_lm(root / "model")
    (root / "rpg_bad_input_rewards.py").write_text(REWARDS_MODULE)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}"}) + "\n" for i in range(4)))
    no_prompt = root / "no_prompt.jsonl"
    no_prompt.write_text(json.dumps({"text": "w1"}) + "\n")
    wrong_extension = root / "prompts.txt"
    wrong_extension.write_text("w1 w2\n")
    not_a_model = root / "not_a_model"
    not_a_model.mkdir()
    # A reward model whose score head is NaN: r_R = NaN for every completion.
    from transformers import LlamaForSequenceClassification

    tokenizer = word_tokenizer([f"w{i}" for i in range(16)], SPECIAL_TOKENS)
    config = tiny_llama_config(tokenizer, hidden_size=16, num_layers=1, num_heads=2, max_positions=64, num_labels=1)
    nan_reward_model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        nan_reward_model.score.weight.fill_(float("nan"))
    nan_reward_model.save_pretrained(root / "nan_rm")
    tokenizer.save_pretrained(root / "nan_rm")
    pairs = random_preference_dataset(8, with_labels=True)
    for name, dataset in {
        "pairs": pairs,
        "pairs_no_rejected": pairs.remove_columns("rejected"),
        "pairs_label_2": pairs.map(lambda row: {"label": 2.0}),
        "pairs_label_nan": pairs.map(lambda row: {"label": float("nan")}),
    }.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(row) for row in dataset.to_list()) + "\n")
    return root


def ppo_flags(files, *extra, reward=("--reward_funcs", "rpg_bad_input_rewards:good")):
    return [
        "--model_name_or_path",
        str(files / "model"),
        "--dataset_name",
        str(files / "prompts.jsonl"),
        *reward,
        "--output_dir",
        str(files / "ppo_out"),
        "--response_length",
        "3",
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "1",
        "--num_ppo_epochs",
        "1",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
        *extra,
    ]


# (id, extra flags or a function of the files directory, expected part of the error line)
PPO_CASES = [
    ("batch_0", ["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1, got 0"),
    ("batch_negative", ["--per_device_train_batch_size", "-1"], "per_device_train_batch_size must be >= 1"),
    ("accumulation_0", ["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be >= 1"),
    ("kl_coef_and_both", ["--kl_coef", "0.1", "--omega_prime", "0.5", "--alpha_hat", "0.02"], "kl_coef=0.1 sets"),
    ("kl_coef_and_omega", ["--kl_coef", "0.1", "--omega_prime", "0.5"], "omega_prime=0.5 was given too"),
    ("kl_coef_and_alpha", ["--kl_coef", "0.1", "--alpha_hat", "0.02"], "alpha_hat=0.02 was given too"),
    ("omega_negative", ["--omega_prime", "-0.1"], "omega_prime"),
    ("alpha_nan", ["--alpha_hat", "nan"], "alpha_hat"),
    ("kl_coef_negative", ["--kl_coef", "-0.5"], "omega_prime"),
    ("response_length_0", ["--response_length", "0"], "response_length must be >= 1"),
    ("temperature", ["--temperature", "0.7"], "temperature must be 1.0"),
    ("ppo_epochs_0", ["--num_ppo_epochs", "0"], "num_ppo_epochs must be >= 1"),
    ("mini_batches_0", ["--num_mini_batches", "0"], "num_mini_batches must be >= 1"),
    ("forward_batch_0", ["--local_rollout_forward_batch_size", "0"], "local_rollout_forward_batch_size must be >= 1"),
    ("cliprange_negative", ["--cliprange", "-1"], "cliprange must be a finite number >= 0"),
    ("cliprange_value_inf", ["--cliprange_value", "inf"], "cliprange_value must be a finite number >= 0"),
    ("vf_coef_nan", ["--vf_coef", "nan"], "vf_coef must be a finite number >= 0"),
    ("gamma_above_1", ["--gamma", "1.5"], "gamma and lam must lie in [0, 1]"),
    ("lam_negative", ["--lam", "-0.1"], "gamma and lam must lie in [0, 1]"),
    ("total_episodes_0", ["--total_episodes", "0"], "total_episodes must be >= 1"),
    ("max_prompt_length_0", ["--max_prompt_length", "0"], "max_prompt_length must be >= 1"),
    ("epochs_0", ["--num_train_epochs", "0"], "num_train_epochs must be a finite number > 0"),
    ("kl_estimator", ["--kl_estimator", "k2"], "kl_estimator must be 'k1' or 'k3', got 'k2'"),
    ("stop_token", ["--stop_token", "eot"], "stop_token must be 'eos' or unset, got 'eot'"),
    ("stop_token_both", ["--stop_token", "eos", "--stop_token_id", "3"], "give stop_token or stop_token_id, not both"),
    ("stop_token_id_negative", ["--stop_token_id", "-1"], "stop_token_id must be a token id >= 0"),
    ("eos_penalty_negative", ["--missing_eos_penalty", "-1"], "missing_eos_penalty must be a finite number >= 0"),
    ("eos_penalty_nan", ["--missing_eos_penalty", "nan"], "missing_eos_penalty must be a finite number >= 0"),
    ("sample_generations", ["--num_sample_generations", "-1"], "num_sample_generations must be >= 0"),
    ("logging_steps_0", ["--logging_steps", "0"], "logging"),
    ("save_steps_0", ["--save_strategy", "steps", "--save_steps", "0"], "save_steps must be > 0"),
    ("min_lr_missing", ["--lr_scheduler_type", "cosine_with_min_lr"], "lr_scheduler_type=cosine_with_min_lr"),
    ("scheduler_kwargs", ["--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs", '{"bogus": 1}'], "bogus"),
    ("optim", ["--optim", "not_an_optimizer"], "invalid choice: 'not_an_optimizer'"),
    ("not_a_number", ["--omega_prime", "high"], "invalid float value: 'high'"),
    ("report_to", ["--report_to", "not_a_tracker"], "not_a_tracker is not supported"),
    ("init_kwargs_json", ["--model_init_kwargs", "{bad json"], "model_init_kwargs must be a JSON object"),
    ("reward_weights", ["--reward_weights", "1", "2"], "reward_weights must have one weight per entry"),
    ("unknown_flag", ["--per_device_batch_size", "4"], "unknown argument(s) ['--per_device_batch_size'"),
    ("stray_word", ["--max_steps", "1", "extra"], "unexpected argument 'extra'"),
    ("ref_path_missing", ["--ref_model_path", "./no/such/ref"], "ref_model_path=./no/such/ref: no such model"),
    (
        "value_path_missing",
        ["--value_model_path", "./no/such/critic"],
        "value_model_path=./no/such/critic: no such model",
    ),
    (
        "lora_with_ref",
        lambda f: ["--use_peft", "--ref_model_path", str(f / "model")],
        "with LoRA the reference is the base",
    ),
    (
        "model_missing",
        lambda f: ["--model_name_or_path", "./no/such/model"],
        "model_name_or_path=./no/such/model: no such",
    ),
    ("model_no_config", lambda f: ["--model_name_or_path", str(f / "not_a_model")], "directory without config.json"),
    ("reward_model_missing", ["__reward__", "--reward_model_path", "./no/such/rm"], "reward_model_path=./no/such/rm"),
    ("no_reward_source", ["__reward__"], "give exactly one reward source"),
    ("two_reward_sources", lambda f: ["--reward_model_path", str(f / "nan_rm")], "give exactly one reward source"),
    (
        "reward_not_importable",
        ["__reward__", "--reward_funcs", "no_such_module_rpg:f"],
        "cannot import reward function",
    ),
    ("reward_malformed", ["__reward__", "--reward_funcs", "math"], "must be written 'module:function'"),
    (
        "reward_signature",
        ["__reward__", "--reward_funcs", "rpg_bad_input_rewards:wrong_signature"],
        "reward function wrong_signature(completions) cannot be called",
    ),
    ("reward_inf", ["__reward__", "--reward_funcs", "rpg_bad_input_rewards:returns_inf"], "returned inf"),
    ("reward_minus_inf", ["__reward__", "--reward_funcs", "rpg_bad_input_rewards:returns_minus_inf"], "returned -inf"),
    ("reward_nan", ["__reward__", "--reward_funcs", "rpg_bad_input_rewards:returns_nan"], "returned nan"),
    (
        "reward_model_nan",
        lambda f: ["__reward__", "--reward_model_path", str(f / "nan_rm")],
        "the reward model returned nan",
    ),
    ("no_dataset", ["--dataset_name", ""], "--dataset_name is required"),
    ("dataset_missing", ["--dataset_name", "./no/such/prompts.jsonl"], "cannot load dataset './no/such/prompts.jsonl'"),
    (
        "dataset_extension",
        lambda f: ["--dataset_name", str(f / "prompts.txt")],
        "must be .json, .jsonl, .csv or .parquet",
    ),
    ("dataset_no_prompt", lambda f: ["--dataset_name", str(f / "no_prompt.jsonl")], "needs a 'prompt' column"),
]


def _argv(files, extra, flags):
    extra = extra(files) if callable(extra) else list(extra)
    if extra and extra[0] == "__reward__":  # the case supplies its own reward source
        return flags(files, *extra[1:], reward=())
    return flags(files, *extra)


def _assert_one_error_line(capsys, command, message):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    assert err.count(f"rpg {command}: error: ") == 1, err[-2000:]
    last = err.strip().splitlines()[-1]  # datasets may draw progress bars on stderr first
    assert last.startswith(f"rpg {command}: error: ") and message in last, last


@pytest.mark.parametrize("extra,message", [case[1:] for case in PPO_CASES], ids=[case[0] for case in PPO_CASES])
def test_rpg_ppo_bad_input_is_one_line_rc_2(files, capsys, monkeypatch, extra, message):
    monkeypatch.syspath_prepend(str(files))
    argv = _argv(files, extra, ppo_flags)
    if "" in argv:  # the no_dataset case: drop every --dataset_name
        argv = [a for i, a in enumerate(argv) if a != "--dataset_name" and (i == 0 or argv[i - 1] != "--dataset_name")]
    assert ppo_cli.main(argv) == 2
    _assert_one_error_line(capsys, "ppo", message)


def test_rpg_ppo_refuses_a_launch_that_did_not_start_a_process_group(files, capsys, monkeypatch):
    # What `accelerate launch --multi_gpu --num_processes 2` does on a machine without GPUs.
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert ppo_cli.main(["--max_steps", "1", "--output_dir", str(files / "toy_out")]) == 2
    _assert_one_error_line(capsys, "ppo", "WORLD_SIZE=2 but this process sees 1 process")
    monkeypatch.syspath_prepend(str(files))
    assert ppo_cli.main(ppo_flags(files)) == 2
    _assert_one_error_line(capsys, "ppo", "torchrun --nproc_per_node 2")


def dpo_flags(files, *extra, data="pairs.jsonl"):
    return [
        "--model_name_or_path",
        str(files / "model"),
        "--dataset_name",
        str(files / data),
        "--output_dir",
        str(files / "dpo_out"),
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        *extra,
    ]


DPO_CASES = [
    ("batch_0", ["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1, got 0"),
    ("eval_batch_0", ["--per_device_eval_batch_size", "0"], "per_device_eval_batch_size must be >= 1, got 0"),
    ("accumulation_0", ["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be >= 1"),
    ("alpha_0", ["--loss", "decoupled", "--alpha_hat", "0"], "alpha_hat must be a finite number > 0"),
    ("alpha_negative", ["--loss", "decoupled", "--alpha_hat", "-0.5"], "alpha_hat must be a finite number > 0"),
    ("alpha_inf", ["--loss", "decoupled", "--alpha_hat", "inf"], "alpha_hat must be a finite number > 0"),
    ("omega_negative", ["--loss", "decoupled", "--omega_prime", "-1"], "omega_prime must be a finite number >= 0"),
    ("beta_0", ["--beta", "0"], "beta must be a finite number > 0"),
    ("loss_unknown", ["--loss", "not_a_loss"], "unknown loss_type ['not_a_loss']"),
    ("ld_alpha", ["--loss", "decoupled", "--ld_alpha", "0.5"], "ld_alpha is not supported"),
    ("f_divergence", ["--loss", "decoupled", "--f_divergence_type", "js_divergence"], "f_divergence_type"),
    ("weighting", ["--loss", "decoupled", "--use_weighting", "true"], "use_weighting (WPO) is not supported"),
    ("unknown_flag", ["--per_device_batch_size", "4"], "unknown argument(s) ['--per_device_batch_size'"),
    (
        "model_missing",
        lambda f: ["--model_name_or_path", "./no/such/model"],
        "model_name_or_path=./no/such/model: no such",
    ),
    ("model_no_config", lambda f: ["--model_name_or_path", str(f / "not_a_model")], "directory without config.json"),
    (
        "dataset_extension",
        lambda f: ["--dataset_name", str(f / "prompts.txt")],
        "must be .json, .jsonl, .csv or .parquet",
    ),
    ("dataset_missing", ["--dataset_name", "./no/such/pairs.jsonl"], "cannot load dataset"),
    ("no_rejected", lambda f: ["--dataset_name", str(f / "pairs_no_rejected.jsonl")], "lacks column(s) ['rejected']"),
    ("ce_label_2", lambda f: ["--dataset_name", str(f / "pairs_label_2.jsonl"), "--loss", "ce"], "must lie in [0, 1]"),
    (
        "ce_label_nan",
        lambda f: ["--dataset_name", str(f / "pairs_label_nan.jsonl"), "--loss", "ce"],
        "must lie in [0, 1]",
    ),
    ("no_test_split", ["--eval_strategy", "steps", "--eval_steps", "1"], "needs split 'test'"),
    ("loss_weights", ["--loss", "sigmoid", "--loss_weights", "1", "2"], "`loss_weights` must have the same length"),
    ("optim", ["--optim", "not_an_optimizer"], "invalid choice: 'not_an_optimizer'"),
    ("not_a_number", ["--beta", "high"], "invalid float value: 'high'"),
]


@pytest.mark.parametrize("extra,message", [case[1:] for case in DPO_CASES], ids=[case[0] for case in DPO_CASES])
def test_rpg_dpo_bad_input_is_one_line_rc_2(files, capsys, extra, message):
    assert dpo_cli.main(_argv(files, extra, dpo_flags)) == 2
    _assert_one_error_line(capsys, "dpo", message)
    assert not (files / "dpo_out").exists()  # nothing ran


def test_rpg_dpo_without_dataset_and_under_a_broken_launch(files, capsys, monkeypatch):
    assert dpo_cli.main(["--model_name_or_path", str(files / "model"), "--output_dir", str(files / "dpo_out")]) == 2
    _assert_one_error_line(capsys, "dpo", "--dataset_name is required")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert dpo_cli.main(dpo_flags(files)) == 2
    _assert_one_error_line(capsys, "dpo", "WORLD_SIZE=3 but this process sees 1 process")
    assert dpo_cli.main(["--max_steps", "1"]) == 2  # the toy job too
    _assert_one_error_line(capsys, "dpo", "WORLD_SIZE=3")


# The embedded toy job's own arguments (no model given): refused while parsing, before the world is built.
TOY_PPO_CASES = [
    ("toy_method", ["--methods", "greedy", "nope"], "unknown methods ['nope']"),
    ("toy_group_size", ["--group_num_generations", "1"], "group_num_generations must be >= 2"),
    ("toy_grpo_scaling", ["--grpo_scale_rewards", "per_token"], "grpo_scale_rewards must be one of"),
    ("toy_alpha_zero", ["--residual_alpha_hat", "0"], "alpha_hat"),
]


@pytest.mark.parametrize("extra,message", [c[1:] for c in TOY_PPO_CASES], ids=[c[0] for c in TOY_PPO_CASES])
def test_rpg_ppo_toy_job_bad_input_is_one_line_rc_2(tmp_path, capsys, extra, message):
    assert ppo_cli.main([*extra, "--output_dir", str(tmp_path / "toy_out"), "--world_cache_dir", str(tmp_path)]) == 2
    _assert_one_error_line(capsys, "ppo", message)
    assert list(tmp_path.iterdir()) == []  # no world built, nothing trained


def test_the_table_has_40_plus_cases():
    assert len(PPO_CASES) + len(DPO_CASES) + 4 >= 40  # + the launch / missing-dataset tests above


@pytest.mark.slow
@pytest.mark.parametrize(
    "command,argv,message",
    [
        ("ppo", ["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
        ("ppo", ["--kl_coef", "0.1", "--omega_prime", "0.5", "--alpha_hat", "0.02"], "kl_coef=0.1 sets"),
        ("dpo", ["--model_name_or_path", "./no/such/model", "--dataset_name", "x.jsonl"], "no such model directory"),
    ],
)
def test_end_to_end_exit_code_2(command, argv, message, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "rpg.cli", command, *argv, "--output_dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert lines[-1].startswith(f"rpg {command}: error: ") and message in lines[-1]


def test_rpg_dpo_accepts_an_unrelated_label_column_without_ce(files):
    # TRL-valid: a `label` column that is not the ce loss's (here out of [0, 1]) is left alone by sigmoid / decoupled.
    for loss in (["--loss", "sigmoid"], ["--loss", "decoupled", "--alpha_hat", "0.2"]):
        parsed = dpo_cli.parse(dpo_flags(files, "--dataset_name", str(files / "pairs_label_2.jsonl"), *loss))
        script, training_args, model_args, dataset_args, _ = parsed
        trainer = dpo_cli.build_model_job(script, training_args, model_args, dataset_args)
        assert not isinstance(trainer.data_collator, dpo_trainer.PreferenceLabelCollator)
    with pytest.raises(ValueError, match="must lie in"):
        dpo_cli.build_model_job(
            *dpo_cli.parse(dpo_flags(files, "--dataset_name", str(files / "pairs_label_2.jsonl"), "--loss", "ce"))[:4]
        )
