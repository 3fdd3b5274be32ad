"""rpg's contenders: :class:`~rpg_llm.ppo.trainer.ResidualPPOTrainer` with the Residual and the KL family's
(ω', α̂), each with three advantage estimators — PPO (a critic, GAE), RLOO and GRPO (no critic, a group of
``settings.num_generations`` completions per prompt).

Every one trains on the reward of eq. 8, r_R + ω'·log π_prior − α̂·log πθ: the KL family is ω' = α̂ = β
(classic KL-regularized RLHF), the Residual family ω' ≠ α̂. The PPO settings are the embedded default toy
job's (:func:`rpg_llm.toy.ppo_job.default_ppo_config`, :func:`rpg_llm.toy.ppo_job.method_config`) with the
benchmark's shared schedule (``contract.ON_POLICY_SCHEDULE``, TRL's contenders' too: 128 completions per
iteration, 2 mini-batches × 4 epochs, 1e-3 decaying linearly to 0): the same for all six, ``<pad>`` / ``<eos>``
suppressed (``suppress_token_ids``: the targets' support), and as many iterations as the budget of completions
allows. GRPO keeps TRL's default per-group std scaling (``scale_rewards="group"``).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from rpg_llm.toy.oracle_benchmark import contract
from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings, Contender, OracleProbe
from rpg_llm.toy.world import ToyWorld

__all__ = ["CONTENDERS", "ESTIMATORS", "run_rpg"]

# key part -> (label, advantage estimator, what it does for the table's notes)
ESTIMATORS = {
    "ppo": ("PPO", "gae", "clipped PPO, critic + GAE (λ = 1), whitened advantages"),
    "rloo": ("RLOO", "rloo", "clipped PPO loss, no critic, leave-one-out baseline over k per prompt"),
    "grpo": ("GRPO", "grpo", "clipped PPO loss, no critic, group mean / std over k per prompt"),
}
FAMILIES = {"residual": "Residual", "kl": "KL"}


def trainer_settings() -> dict:
    """What these runs depend on beyond the benchmark's settings and world (part of the run cache's key)."""
    from rpg_llm.ppo.cli import TOY_DEFAULTS

    # Only the toy defaults run_rpg does not override: retuning the toy job's schedule moves no cached run.
    replaced = set(_schedule_overrides()) | {"max_steps", "output_dir", "seed", "logging_steps", "disable_tqdm"}
    shared = {name: value for name, value in TOY_DEFAULTS.items() if name not in replaced}
    return {"toy_ppo_defaults": shared, "schedule": dataclasses.asdict(contract.ON_POLICY_SCHEDULE)}


def _schedule_overrides() -> dict:
    """The shared schedule as ResidualPPOConfig fields (one optimizer step per mini-batch)."""
    schedule = contract.ON_POLICY_SCHEDULE
    return dict(
        per_device_train_batch_size=schedule.generation_batch // schedule.mini_batches,
        gradient_accumulation_steps=1,
        num_mini_batches=schedule.mini_batches,
        num_ppo_epochs=schedule.passes,
        learning_rate=schedule.learning_rate,
        lr_scheduler_type="linear",
    )


def run_rpg(
    world: ToyWorld,
    settings: BenchmarkSettings,
    seed: int,
    probe: OracleProbe,
    output_dir: Path,
    *,
    family: str,
    kind: str,
) -> dict:
    """Train ResidualPPOTrainer from the world's prior with ``family``'s (ω', α̂) and ``kind``'s estimator,
    reporting to ``probe`` after every iteration; returns the run's settings (facts for the results file)."""
    from rpg_llm.toy.ppo_job import default_ppo_config, method_config, toy_ppo_trainer

    omega_prime, alpha_hat = settings.kl_target if family == "kl" else settings.residual_target
    estimator = ESTIMATORS[kind][1]
    shared = default_ppo_config(
        **_schedule_overrides(), output_dir=str(output_dir), seed=seed, disable_tqdm=True, logging_strategy="no"
    )
    per_iteration = shared.local_batch_size  # the same for all six: RLOO / GRPO hold that / k prompts
    iterations = settings.completions // per_iteration
    if iterations < 1:
        raise ValueError(
            f"completions={settings.completions} is less than one iteration of rpg's trainer ({per_iteration})"
        )
    shared = dataclasses.replace(shared, max_steps=iterations)  # the linear decay reaches 0 at the budget's end
    args = method_config(
        shared, omega_prime, alpha_hat, estimator, settings.num_generations, world, Path(output_dir) / "trainer"
    )
    trainer = toy_ppo_trainer(
        world, args, callbacks=[lambda t, stats: probe.observe(t.policy, t.iteration * per_iteration)]
    )
    probe.start(trainer.policy)
    trainer.train()
    probe.finish(trainer.policy, trainer.iteration * per_iteration)
    return {
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": getattr(args.lr_scheduler_type, "value", str(args.lr_scheduler_type)),
        "iterations": trainer.iteration,
        "completions_per_iteration": per_iteration,
        "completions_sampled": trainer.iteration * per_iteration,
        "num_generations": args.num_generations,
        "mini_batches": args.num_mini_batches,
        "ppo_epochs": args.num_ppo_epochs,
        "estimator": estimator,
        "whiten_advantages": args.whiten_advantages,
        "scale_rewards": args.scale_rewards if estimator == "grpo" else None,  # TRL's default, "group"
        "omega_prime": omega_prime,
        "alpha_hat": alpha_hat,
        "suppress_token_ids": list(args.suppress_token_ids),
    }


def _contender(family: str, kind: str) -> Contender:
    label, estimator, notes = ESTIMATORS[kind]
    return Contender(
        key=f"rpg_{kind}_{family}",
        label=f"rpg {FAMILIES[family]} {label}",
        family=family,
        trainer="rpg",
        run=partial(run_rpg, family=family, kind=kind),
        notes=f"ResidualPPOTrainer --advantage_estimator {estimator}: {notes}",
    )


CONTENDERS: list[Contender] = [_contender(family, kind) for kind in ESTIMATORS for family in FAMILIES]
