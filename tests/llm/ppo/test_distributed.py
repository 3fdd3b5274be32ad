"""Residual PPO under ``torchrun`` with two CPU processes (gloo): the same trainer `accelerate launch` runs.

Two processes must (1) draw disjoint prompt shards that together are exactly the prompts one process
with twice the batch would draw, (2) stay identical replicas after training (DDP averages the
policy's and the critic's gradients, so the weights never drift apart), and (3) log the same
process-averaged metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.trainer import ResidualPPOTrainer

from .helpers import TINY_RUN

WORLD = dict(vocab_size=6, completion_length=4, num_prompts=6, distill_steps=0, hidden_size=32, num_heads=2, seed=3)
# The helpers' tiny run, with 2 completions per process and step so two processes split a batch of 4.
ARGS = {**TINY_RUN, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "use_cpu": True}

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from rpg_llm.ppo.config import ResidualPPOConfig
    from rpg_llm.ppo.trainer import ResidualPPOTrainer
    from rpg_llm.toy.world import ToyWorld, ToyWorldConfig

    world_kwargs, args_kwargs, cache, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    world = ToyWorld.build(ToyWorldConfig(**world_kwargs), cache, progress=False)  # cached by the test
    args = ResidualPPOConfig(output_dir=out + "/trainer", **args_kwargs)
    trainer = ResidualPPOTrainer(args, str(world.prior_model_dir), processing_class=world.tokenizer,
                                 train_dataset=world.prompt_dataset(repeats=4), reward_funcs=world.reward_functions())
    shard = trainer._prompt_indices(0)
    trainer.train()
    trainer.save_model(out + "/saved")  # every process takes part (gathered state dict); rank 0 writes
    rank = trainer.accelerator.process_index
    model = trainer.accelerator.unwrap_model(trainer.model)
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")
    with open(f"{out}/rank{rank}.json", "w") as handle:
        json.dump({"processes": trainer.accelerator.num_processes, "shard": shard, "log": trainer.log_history}, handle)
    """
)


@pytest.mark.slow
def test_two_processes_shard_prompts_and_stay_in_sync(toy_world, tmp_path):
    world = toy_world(**WORLD)
    cache = world.directory.parent  # the workers load the same built world from it
    single = ResidualPPOTrainer(
        ResidualPPOConfig(output_dir=str(tmp_path / "single"), **{**ARGS, "per_device_train_batch_size": 4}),
        str(world.prior_model_dir),
        processing_class=world.tokenizer,
        train_dataset=world.prompt_dataset(repeats=4),
        reward_funcs=world.reward_functions(),
    )
    start = {k: v.detach().clone() for k, v in single.accelerator.unwrap_model(single.model).state_dict().items()}

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(script),
        json.dumps(WORLD),
        json.dumps(ARGS),
        str(cache),
        str(tmp_path),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    facts = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [f["processes"] for f in facts] == [2, 2]
    # (1) disjoint shards whose union is what one process with the doubled batch draws, in order
    assert not set(facts[0]["shard"]) & set(facts[1]["shard"])
    assert facts[0]["shard"] + facts[1]["shard"] == single._prompt_indices(0)

    # (2) identical replicas, and training moved them
    weights = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)
    moved = max((weights[0][name] - start[name]).abs().max().item() for name in start)
    assert moved > 1e-4
    # the saved model is complete and loadable: exactly the trained policy and critic
    from transformers import AutoModelForCausalLM

    from rpg_llm.ppo.critic import CausalLMCritic

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").state_dict()
    for name, value in saved.items():
        torch.testing.assert_close(value, weights[0]["policy." + name], rtol=0, atol=0, msg=name)
    critic = CausalLMCritic.from_pretrained(tmp_path / "saved" / "critic").state_dict()
    for name, value in critic.items():
        torch.testing.assert_close(value, weights[0]["critic." + name], rtol=0, atol=0, msg=name)

    # (3) the logged metrics are the process means: the same numbers on both ranks
    assert len(facts[0]["log"]) == len(facts[1]["log"]) == ARGS["max_steps"]
    for row0, row1 in zip(facts[0]["log"], facts[1]["log"]):
        row0.pop("seconds_per_iteration"), row1.pop("seconds_per_iteration")  # each process's own clock
        assert row0.keys() == row1.keys() and "reward/addon" in row0
        assert row0 == pytest.approx(row1)
