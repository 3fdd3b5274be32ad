"""Two processes (torchrun, gloo on CPU) take the same SGD step as one process on the whole batch.

DDP averages the gradients of the two half-batch means, which is the gradient of the full-batch
mean; so after one step with plain SGD the weights must agree to float precision. This checks the
decoupled / CE terms are reduced like TRL's own losses under ``accelerate`` / ``torchrun``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rpg_llm.dpo import cli as dpo_cli

from ..tiny_lm import build_tiny_causal_lm, random_preference_dataset

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "decoupled_dpo_llm.py"


def flags(model_dir, data_file, output_dir, batch_size):
    # Plain SGD without gradient clipping: clipping would normalise away a wrongly scaled loss.
    return [
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(data_file),
        "--output_dir",
        str(output_dir),
        "--loss",
        "decoupled",
        "ce",
        "--loss_weights",
        "1.0",
        "0.5",
        "--alpha_hat",
        "0.3",
        "--omega_prime",
        "0.1",
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        str(batch_size),
        "--optim",
        "sgd",
        "--learning_rate",
        "0.5",
        "--max_grad_norm",
        "0",
        "--report_to",
        "none",
        "--gradient_checkpointing",
        "false",
        "--save_strategy",
        "no",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
    ]


@pytest.mark.slow
def test_two_processes_take_the_single_process_step(tmp_path):
    model_dir = build_tiny_causal_lm(tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    pairs = random_preference_dataset(8, with_labels=True, seed=5)
    data.write_text("\n".join(json.dumps(row) for row in pairs.to_list()) + "\n")

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(RECIPE),
        *flags(model_dir, data, tmp_path / "two", batch_size=4),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert dpo_cli.main(flags(model_dir, data, tmp_path / "one", batch_size=8)) == 0

    two, one = load_file(tmp_path / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    start = load_file(Path(model_dir) / "model.safetensors")
    moved = max((one[name] - start[name]).abs().max().item() for name in one)
    assert moved > 1e-3  # the step did something
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
