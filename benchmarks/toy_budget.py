"""The embedded toy job's budget search: final exact KL(πθ ‖ own target) of its methods under named PPO settings.

    python benchmarks/toy_budget.py --settings default --methods residual residual_rloo residual_grpo --seeds 0 1 2

Each run trains one method of ``recipes/residual_ppo_llm.py``'s embedded job (its world, its (ω', α̂), its
``method_config``) from the distilled prior with the job's defaults changed as ``--settings`` names, and appends
one JSON line (settings, method, seed, final KL, training seconds, provenance) to ``--output``. For a given seed
one method per process gives the job's own number for that method (the trainer seeds itself). The table in
docs/toy_world.md ("The embedded default's budget") is these lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (changes to rpg_llm.ppo.cli.TOY_DEFAULTS, the GRPO row's std scaling)
SETTINGS = {
    "default": ({}, "batch"),
    "before: 128 x 4 epochs x 120": (dict(per_device_train_batch_size=64, num_ppo_epochs=4, max_steps=120), "batch"),
    "128 x 4 epochs x 200": (dict(per_device_train_batch_size=64, num_ppo_epochs=4, max_steps=200), "batch"),
    "128 (4 x 32) x 4 epochs x 120": (
        dict(per_device_train_batch_size=32, num_mini_batches=4, num_ppo_epochs=4, max_steps=120),
        "batch",
    ),
    "256 x 2 epochs x 120": (dict(max_steps=120), "batch"),
    "256 (4 x 64) x 2 epochs x 120": (dict(per_device_train_batch_size=64, num_mini_batches=4, max_steps=120), "batch"),
    "256 x 2 epochs x 120, lr 7e-4": (dict(max_steps=120, learning_rate=7e-4), "batch"),
    "256 x 1 epoch x 240": (dict(num_ppo_epochs=1, max_steps=240), "batch"),
    "default, GRPO per group": ({}, "group"),
}


def run_one(world, experiment, name: str, method: str, seed: int, output_dir: Path) -> dict:
    from rpg_llm.toy.ppo_job import _method_args, default_ppo_config, method_coefficients, toy_ppo_trainer

    changes, grpo_scaling = SETTINGS[name]
    experiment = dataclasses.replace(experiment, grpo_scale_rewards=grpo_scaling)
    omega_prime, alpha_hat = method_coefficients(experiment)[method]
    shared = default_ppo_config(**changes, seed=seed, output_dir=str(output_dir), disable_tqdm=True)
    args = _method_args(shared, experiment, method, omega_prime, alpha_hat, world)
    started = time.perf_counter()
    trainer = toy_ppo_trainer(world, args)
    trainer.train()
    seconds = time.perf_counter() - started
    kl = world.evaluate(trainer.policy, omega_prime, alpha_hat)["kl_to_target"]
    return {"settings": name, "method": method, "seed": seed, "kl_to_target": kl, "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    from rpg_llm.toy.ppo_job import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output", default=str(ROOT / "results" / "llm" / "toy_budget.jsonl"))
    cli = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from rpg.utils.provenance import provenance
    from rpg_llm.toy.ppo_job import ToyExperimentArguments
    from rpg_llm.toy.world import ToyWorld

    torch.set_num_threads(1)
    experiment = ToyExperimentArguments()
    world = ToyWorld.build(experiment.world_config(), experiment.world_cache_dir)
    facts = provenance([sys.executable, "benchmarks/toy_budget.py", *(argv if argv is not None else sys.argv[1:])], {})
    with open(cli.output, "a") as out:
        for seed in cli.seeds:
            for method in cli.methods:
                row = run_one(world, experiment, cli.settings, method, seed, ROOT / "outputs" / "toy_budget")
                print(json.dumps(row), flush=True)
                out.write(json.dumps({**row, "provenance": facts}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
