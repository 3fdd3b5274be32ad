"""What GRPO's std scaling does on the toy world: Residual RLOO vs GRPO (group / batch / no scaling).

    python benchmarks/toy_group_scaling.py [--iterations 120] [--seeds 0 1]

Each estimator trains the distilled prior of the embedded default's toy world with Residual's (ω', α̂) =
(0.5, 0.25) and the oracle benchmark's schedule (128 completions per iteration in 2 mini-batches × 4 epochs,
1e-3 decaying linearly, k = 4 per prompt).
Every ``--every`` iterations it records, exactly (enumerating all completions), KL(πθ ‖ π*) per prompt and
the std of eq. 8's sequence return R(x, y) under πθ per prompt — the σ_x that GRPO divides by. Writes
``results/llm/critic_free_group_scaling.json`` and ``.md`` (see docs/llm_critic_free.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = {
    "rloo": ("rloo", "group"),
    "grpo (group)": ("grpo", "group"),
    "grpo (batch)": ("grpo", "batch"),
    "grpo (none)": ("grpo", "none"),
}


def exact_probe(world, policy, prior_log_probs, omega_prime: float, alpha_hat: float) -> dict:
    """Per prompt: KL(πθ ‖ π*) and std_{y∼πθ} R(x, y), R = r_R + ω'·log π_ref − α̂·log πθ (π_ref: the prior model)."""
    import torch

    with torch.no_grad():
        log_probs = world.model_log_probs(policy)
    conditional = log_probs - log_probs.exp().sum(-1, keepdim=True).log()
    p = conditional.exp()
    target = world.exact_target_log_probs(omega_prime, alpha_hat)
    _, addon = world.completion_rewards()
    returns = addon + omega_prime * prior_log_probs - alpha_hat * log_probs
    mean = (p * returns).sum(-1, keepdim=True)
    return {
        "kl_to_target_per_prompt": (p * (conditional - target)).sum(-1).tolist(),
        "return_std_per_prompt": (p * (returns - mean) ** 2).sum(-1).sqrt().tolist(),
    }


def train(world, experiment, ppo_args, estimator: str, scale: str, seed: int, every: int) -> list[dict]:
    from rpg_llm.toy.ppo_job import toy_ppo_trainer

    omega_prime, alpha_hat = experiment.residual_omega_prime, experiment.residual_alpha_hat
    args = dataclasses.replace(
        ppo_args,
        omega_prime=omega_prime,
        alpha_hat=alpha_hat,
        kl_coef=None,
        response_length=world.completion_length,
        advantage_estimator=estimator,
        num_generations=experiment.group_num_generations,
        whiten_advantages=False,
        scale_rewards=scale,
        seed=seed,
        output_dir=str(Path(ppo_args.output_dir) / f"{estimator}-{scale}-{seed}"),
        disable_tqdm=True,
    )
    prior_log_probs = world.model_log_probs(world.load_prior_model())
    probes = []

    def probe(trainer, stats):
        if trainer.iteration % every == 0:
            probes.append(
                {
                    "iteration": trainer.iteration,
                    **exact_probe(world, trainer.policy, prior_log_probs, omega_prime, alpha_hat),
                }
            )

    trainer = toy_ppo_trainer(world, args, callbacks=[probe])
    probes.append({"iteration": 0, **exact_probe(world, trainer.policy, prior_log_probs, omega_prime, alpha_hat)})
    trainer.train()
    return probes


def markdown(payload: dict) -> str:
    lines = [
        "# Residual RLOO vs GRPO scalings on the toy world",
        "",
        "KL(πθ ‖ π*) to the Residual target (ω' = 0.5, α̂ = 0.25), mean over prompts and seeds, by iteration;",
        "σ_x = std of eq. 8's return under πθ (what GRPO divides by), mean over prompts, at the end.",
        "",
    ]
    iterations = [p["iteration"] for p in next(iter(payload["runs"].values()))[0]]
    lines.append("| estimator | " + " | ".join(f"KL @ {i}" for i in iterations) + " | σ_x at end (per prompt) |")
    lines.append("|---|" + "---|" * (len(iterations) + 1))
    for name, runs in payload["runs"].items():
        kls = [
            statistics.mean(statistics.mean(run[j]["kl_to_target_per_prompt"]) for run in runs)
            for j in range(len(iterations))
        ]
        prompts = range(len(runs[0][-1]["return_std_per_prompt"]))
        stds = [statistics.mean(run[-1]["return_std_per_prompt"][x] for run in runs) for x in prompts]
        cells = " | ".join(f"{k:.3f}" for k in kls)
        lines.append(f"| {name} | {cells} | " + ", ".join(f"{s:.3f}" for s in stds) + " |")
    lines += ["", "Provenance: " + ", ".join(f"{k}={v}" for k, v in payload["provenance"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output", default=str(ROOT / "results" / "llm" / "critic_free_group_scaling.json"))
    cli = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from rpg.utils.atomic import write_json_atomic, write_text_atomic
    from rpg.utils.provenance import provenance
    from rpg_llm.ppo.cli import _parse
    from rpg_llm.toy.oracle_benchmark.contract import ON_POLICY_SCHEDULE as schedule
    from rpg_llm.toy.world import ToyWorld

    # The oracle benchmark's schedule (128 per iteration, 4 epochs), fixed here so the study does not move with
    # the toy job's default; the results file's provenance names the commit each study ran at.
    _, experiment, ppo_args, _ = _parse(
        ["--max_steps", str(cli.iterations), "--output_dir", "outputs/toy_group_scaling"]
        + ["--per_device_train_batch_size", str(schedule.generation_batch // schedule.mini_batches)]
        + ["--num_mini_batches", str(schedule.mini_batches), "--num_ppo_epochs", str(schedule.passes)]
        + ["--learning_rate", str(schedule.learning_rate), "--lr_scheduler_type", "linear"]
    )
    world = ToyWorld.build(experiment.world_config(), experiment.world_cache_dir)
    started = time.perf_counter()
    runs = {}
    for name, (estimator, scale) in ESTIMATORS.items():
        runs[name] = [train(world, experiment, ppo_args, estimator, scale, seed, cli.every) for seed in cli.seeds]
        print(name, [round(statistics.mean(r[-1]["kl_to_target_per_prompt"]), 4) for r in runs[name]], flush=True)
    payload = {
        "provenance": provenance(
            [sys.executable, "benchmarks/toy_group_scaling.py", *(argv if argv is not None else sys.argv[1:])],
            {"seeds": cli.seeds, "iterations": cli.iterations, "wall_seconds": round(time.perf_counter() - started, 1)},
        ),
        "world_prompts": world.prompts,
        "coefficients": {"omega_prime": experiment.residual_omega_prime, "alpha_hat": experiment.residual_alpha_hat},
        "k": experiment.group_num_generations,
        "runs": runs,
    }
    output = Path(cli.output)
    write_json_atomic(output, payload)
    write_text_atomic(output.with_suffix(".md"), markdown(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
