"""DPO, decoupled DPO and the implicit-reward CE loss as contenders of the exact-oracle benchmark
(docs/llm_oracle_contenders.md), on rpg's :class:`~rpg_llm.dpo.trainer.DecoupledDPOTrainer`.

Pairs of completions are drawn from the exact prior and labelled by Bradley–Terry on r_R
(:func:`rpg_llm.toy.dpo_pairs.sample_preference_pairs`): the budget of ``settings.completions``
completions buys ``completions // 2`` pairs, each used once (a single pass, batch after batch, so
"completions sampled so far" = 2 × pairs consumed: the streaming / online reading of an offline loss).
Under these labels the population optimum of DPO with β is π_prior·exp(r_R/β) (the KL family's target,
ω' = α̂ = β) and that of decoupled DPO is π_prior^(ω'/α̂)·exp(r_R/α̂) (eq. 25, the Residual family's).
The CE loss (eq. 24) has no closed-form optimum with these labels; it shares DPO's implicit reward
β·log πθ/π_prior, so it is scored against DPO's target (its ``notes`` say so).

One support: policy and reference are restricted to content tokens with
:func:`~rpg_llm.toy.oracle_benchmark.contract.restrict_to_content` (TRL's DPO log-probs go
through the same fused LM head as GRPO's), so the losses see the content-only law the targets live on.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from rpg_llm.toy.oracle_benchmark.contract import (
    TRAINER_ARGS,
    BenchmarkSettings,
    Contender,
    OracleProbe,
    restrict_to_content,
)
from rpg_llm.toy.world import ToyWorld

__all__ = [
    "CONTENDERS",
    "PAIRS_PER_STEP",
    "LEARNING_RATE",
    "preference_coefficients",
    "build_preference_trainer",
    "run_preference",
]

PAIRS_PER_STEP = 32  # pairs per AdamW step (no accumulation)
LEARNING_RATE = 3e-4  # AdamW, linear decay to 0 over the single pass (the toy DPO job's rate; see the docs)


def trainer_settings() -> dict:
    """What these runs depend on beyond the benchmark's settings and world (part of the run cache's key)."""
    return {"pairs_per_step": PAIRS_PER_STEP, "learning_rate": LEARNING_RATE, "trainer_args": TRAINER_ARGS}


def preference_coefficients(loss_type: str, settings: BenchmarkSettings) -> dict:
    """The loss's coefficients: β for DPO (``sigmoid``) and CE; α̂, ω' for ``decoupled`` (eq. 25)."""
    if loss_type == "decoupled":
        omega_prime, alpha_hat = settings.residual_target
        return {"beta": alpha_hat, "alpha_hat": alpha_hat, "omega_prime": omega_prime}
    if loss_type in ("sigmoid", "ce"):
        return {"beta": settings.kl_beta, "alpha_hat": None, "omega_prime": None}
    raise ValueError(f"unknown preference loss_type {loss_type!r}; choose from sigmoid, decoupled, ce")


def _probe_callback(probe: OracleProbe, num_pairs: int):
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        """After each optimizer step: every pair consumed so far counts its two completions."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            probe.observe(model, 2 * min(state.global_step * PAIRS_PER_STEP, num_pairs))

    return ProbeCallback()


def build_preference_trainer(
    loss_type: str, world: ToyWorld, settings: BenchmarkSettings, seed: int, output_dir, callbacks=()
):
    """(trainer, number of pairs): ``DecoupledDPOTrainer`` with ``loss_type`` on ``settings.completions // 2``
    fresh pairs, one pass; policy and reference restricted to content tokens. ``seed`` seeds the pair
    sampling and the trainer (data order)."""
    from rpg_llm.dpo.config import DecoupledDPOConfig
    from rpg_llm.dpo.trainer import DecoupledDPOTrainer
    from rpg_llm.toy.dpo_pairs import sample_preference_pairs

    coefficients = preference_coefficients(loss_type, settings)
    num_pairs = settings.completions // 2
    if num_pairs < 1:
        raise ValueError(f"completions={settings.completions} buys no pair (a pair is two completions)")
    pairs = sample_preference_pairs(world, num_pairs, seed=seed)
    policy, reference = world.load_prior_model(), world.load_prior_model()
    for model in (policy, reference):
        restrict_to_content(model, world.special_token_ids)
    steps = math.ceil(num_pairs / PAIRS_PER_STEP)
    args = DecoupledDPOConfig(
        output_dir=str(Path(output_dir)),
        loss_type=[loss_type],
        **coefficients,
        completion_eos=False,  # fixed-length completions carry no EOS
        per_device_train_batch_size=PAIRS_PER_STEP,
        max_steps=steps,  # one pass: ceil(pairs / batch) steps, the last batch possibly smaller
        learning_rate=LEARNING_RATE,
        **TRAINER_ARGS,
        logging_steps=max(1, steps // 4),
        seed=seed,
        data_seed=seed,
    )
    trainer = DecoupledDPOTrainer(
        policy,
        ref_model=reference,
        args=args,
        train_dataset=pairs,
        processing_class=world.tokenizer,
        callbacks=list(callbacks),
    )
    return trainer, num_pairs


def run_preference(
    loss_type: str, world: ToyWorld, settings: BenchmarkSettings, seed: int, probe: OracleProbe, output_dir
) -> dict:
    """Train the prior with ``loss_type`` on ``settings.completions // 2`` fresh pairs, each seen once."""
    torch.set_num_threads(1)
    num_pairs = settings.completions // 2
    callback = _probe_callback(probe, num_pairs)
    trainer, num_pairs = build_preference_trainer(loss_type, world, settings, seed, output_dir, [callback])
    probe.start(trainer.model)
    trainer.train()
    probe.finish(trainer.model, 2 * num_pairs)
    return {
        "trainer": "rpg_llm.dpo.DecoupledDPOTrainer",
        "loss_type": loss_type,
        **preference_coefficients(loss_type, settings),
        "pairs": num_pairs,
        "completions": 2 * num_pairs,
        "completions_per_step": 2 * PAIRS_PER_STEP,
        "passes": 1,
        "pair_source": "exact prior, Bradley–Terry labels on r_R (rpg_llm.toy.dpo_pairs), seeded by the run's seed",
        "optimizer_steps": trainer.state.global_step,
        "optimizer": "adamw_torch",
        "learning_rate": LEARNING_RATE,
        "lr_scheduler": "linear",
        "max_grad_norm": trainer.args.max_grad_norm,
        "support": "content-only: <pad>/<eos> suppressed in policy and reference (hook + head bias)",
    }


def _runner(loss_type: str):
    def run(world: ToyWorld, settings: BenchmarkSettings, seed: int, probe: OracleProbe, output_dir) -> dict:
        return run_preference(loss_type, world, settings, seed, probe, output_dir)

    run.__name__ = f"run_{loss_type}"
    return run


STREAMING = "pairs from the exact prior, each seen once (completions = 2 × pairs consumed)"
CONTENDERS: list[Contender] = [
    Contender(
        key="dpo",
        label="DPO (β)",
        family="kl",
        trainer="rpg",
        run=_runner("sigmoid"),
        notes=f"TRL's sigmoid DPO loss; optimum π_prior·exp(r_R/β) under Bradley–Terry labels; {STREAMING}",
    ),
    Contender(
        key="decoupled_dpo",
        label="decoupled DPO (ω', α̂)",
        family="residual",
        trainer="rpg",
        run=_runner("decoupled"),
        notes=f"eq. 25, implicit reward α̂·log πθ − ω'·log π_prior; optimum π_prior^(ω'/α̂)·exp(r_R/α̂); {STREAMING}",
    ),
    Contender(
        key="ce",
        label="CE on implicit reward (β)",
        family="kl",
        trainer="rpg",
        run=_runner("ce"),
        notes="eq. 24 with soft Bradley–Terry labels; no closed-form optimum, scored against DPO's target "
        f"π_prior·exp(r_R/β), whose implicit reward β·log πθ/π_prior it shares; {STREAMING}",
    ),
]
