"""TRL's own critic-free trainers as contenders of the exact-oracle benchmark (docs/llm_oracle_contenders.md).

``trl_grpo`` is ``trl.GRPOTrainer`` and ``trl_rloo`` is ``trl.RLOOTrainer``, both with β = ``settings.kl_beta``
and TRL's defaults for their estimator (GRPO: ``loss_type="dapo"``, ``scale_rewards="group"``; RLOO: the KL
penalty β·Σ_t log πθ/π_ref in the sequence reward, no advantage normalization). Both are scored against
the KL family's target π_prior·exp(r_R/β), eq. 8's optimum with ω' = α̂ = β, which is what the KL term
nominally regularizes toward.

The schedule is rpg's contenders' (``contract.ON_POLICY_SCHEDULE``): 128 completions per generation (32
prompts × ``num_generations``), 2 mini-batches × 4 passes = 8 AdamW steps per generation (TRL's
``steps_per_generation=2``, ``num_iterations=4``), learning rate 1e-3 decaying linearly to 0.

One support: :func:`restrict_to_content` (a fixed bias of the lowest float on ``<pad>`` / ``<eos>`` in the
LM head) on the policy and on the reference TRL builds, so every path — ``generate``, TRL's fused log-probs
and entropies, the probe — sees the same content-only law.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rpg_llm.toy.oracle_benchmark import contract
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
    "TRLSchedule",
    "trl_schedule",
    "build_trl_trainer",
    "run_trl_grpo",
    "run_trl_rloo",
]


def trainer_settings() -> dict:
    """What these runs depend on beyond the benchmark's settings and world (part of the run cache's key)."""
    return {**asdict(contract.ON_POLICY_SCHEDULE), "trainer_args": TRAINER_ARGS}


@dataclass(frozen=True)
class TRLSchedule:
    """How a budget of completions maps onto TRL's generation and optimizer steps (single process)."""

    generation_batch: int  # completions per generation (TRL's generation_batch_size)
    generations: int
    steps_per_generation: int  # micro-batches per generation; one optimizer step each (no accumulation)
    num_iterations: int  # passes over each generation

    @property
    def micro_batch(self) -> int:
        return self.generation_batch // self.steps_per_generation

    @property
    def steps_per_cycle(self) -> int:
        """Optimizer steps on each generation before the next one is sampled."""
        return self.steps_per_generation * self.num_iterations

    @property
    def max_steps(self) -> int:
        return self.generations * self.steps_per_cycle

    @property
    def completions(self) -> int:
        return self.generations * self.generation_batch

    def completions_after(self, optimizer_steps: int) -> int:
        """Completions sampled once ``optimizer_steps`` steps are done (TRL samples at a cycle's first step)."""
        return math.ceil(optimizer_steps / self.steps_per_cycle) * self.generation_batch


def trl_schedule(settings: BenchmarkSettings) -> TRLSchedule:
    """Generations of up to the shared schedule's completions (whole groups, split into its mini-batches)
    within the budget (:data:`~rpg_llm.toy.oracle_benchmark.contract.ON_POLICY_SCHEDULE`: 128, 2, 4 passes)."""
    shared = contract.ON_POLICY_SCHEDULE
    unit = settings.num_generations * shared.mini_batches
    batch = min(shared.generation_batch, settings.completions) // unit * unit
    if batch == 0:
        raise ValueError(
            f"completions={settings.completions} is below one generation of {unit} "
            f"(num_generations={settings.num_generations} × {shared.mini_batches} mini-batches)"
        )
    return TRLSchedule(batch, settings.completions // batch, shared.mini_batches, shared.passes)


def _probe_callback(probe: OracleProbe, schedule: TRLSchedule):
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        """Reports to the probe after the last optimizer step on each generation: the model has then used
        every completion sampled so far (the next generation is sampled at the next step)."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % schedule.steps_per_cycle == 0:
                probe.observe(model, schedule.completions_after(state.global_step))

    return ProbeCallback()


def _trl_config(config_class, world: ToyWorld, settings: BenchmarkSettings, seed: int, output_dir: Path, schedule):
    return config_class(
        output_dir=str(output_dir),
        beta=settings.kl_beta,
        num_generations=settings.num_generations,
        max_completion_length=world.completion_length,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        per_device_train_batch_size=schedule.micro_batch,
        steps_per_generation=schedule.steps_per_generation,
        num_iterations=schedule.num_iterations,
        max_steps=schedule.max_steps,
        learning_rate=contract.ON_POLICY_SCHEDULE.learning_rate,
        **TRAINER_ARGS,
        use_vllm=False,
        logging_steps=schedule.steps_per_cycle * 10,
        seed=seed,
        data_seed=seed,
    )


def build_trl_trainer(kind: str, world: ToyWorld, settings: BenchmarkSettings, seed: int, output_dir, callbacks=()):
    """(trainer, schedule): TRL's ``GRPOTrainer`` (``kind="grpo"``) or ``RLOOTrainer`` (``"rloo"``) on the prior,
    policy and TRL's own reference model both restricted to content tokens."""
    import trl

    if kind not in ("grpo", "rloo"):
        raise ValueError(f"kind must be 'grpo' or 'rloo', got {kind!r}")
    schedule = trl_schedule(settings)
    config_class, trainer_class = (
        (trl.GRPOConfig, trl.GRPOTrainer) if kind == "grpo" else (trl.RLOOConfig, trl.RLOOTrainer)
    )
    args = _trl_config(config_class, world, settings, seed, Path(output_dir), schedule)
    policy = world.load_prior_model()
    restrict_to_content(policy, world.special_token_ids)
    prompts_per_generation = schedule.generation_batch // settings.num_generations
    trainer = trainer_class(
        model=policy,
        reward_funcs=world.reward_functions(),
        args=args,
        # RepeatSampler draws a generation's prompts without replacement: repeat the few prompts to fill one
        train_dataset=world.prompt_dataset(repeats=math.ceil(prompts_per_generation / len(world.prompts))),
        processing_class=world.tokenizer,
        callbacks=list(callbacks),
    )
    restrict_to_content(trainer.ref_model, world.special_token_ids)  # TRL built it from the prior's path
    return trainer, schedule


def _run_trl(kind: str, world: ToyWorld, settings: BenchmarkSettings, seed: int, probe: OracleProbe, output_dir):
    torch.set_num_threads(1)
    schedule = trl_schedule(settings)
    trainer, schedule = build_trl_trainer(kind, world, settings, seed, output_dir, [_probe_callback(probe, schedule)])
    probe.start(trainer.model)
    trainer.train()
    probe.finish(trainer.model, schedule.completions)
    return _facts(trainer, schedule, kind)


def _facts(trainer, schedule: TRLSchedule, kind: str) -> dict:
    import trl

    a = trainer.args
    facts = {
        "trainer": f"trl.{type(trainer).__name__}",
        "trl_version": trl.__version__,
        "beta": a.beta,
        "num_generations": a.num_generations,
        "completions": schedule.completions,
        "completions_per_generation": schedule.generation_batch,
        "generations": schedule.generations,
        "steps_per_generation": a.steps_per_generation,
        "num_iterations": a.num_iterations,
        "per_device_train_batch_size": a.per_device_train_batch_size,
        "optimizer_steps": trainer.state.global_step,
        "optimizer": str(a.optim.value if hasattr(a.optim, "value") else a.optim),
        "learning_rate": a.learning_rate,
        "lr_scheduler": str(getattr(a.lr_scheduler_type, "value", a.lr_scheduler_type)),
        "max_grad_norm": a.max_grad_norm,
        "epsilon": a.epsilon,
        "temperature": a.temperature,
        "max_completion_length": a.max_completion_length,
        "support": "content-only: <pad>/<eos> suppressed in policy and reference (hook + head bias)",
    }
    if kind == "grpo":
        facts.update(loss_type=a.loss_type, scale_rewards=a.scale_rewards, kl_in="loss (k3 estimator per token)")
    else:
        facts.update(normalize_advantages=a.normalize_advantages, kl_in="reward (β·Σ_t log πθ/π_ref per sequence)")
    return facts


def run_trl_grpo(world: ToyWorld, settings: BenchmarkSettings, seed: int, probe: OracleProbe, output_dir) -> dict:
    """``trl.GRPOTrainer`` with β = ``settings.kl_beta`` and TRL's default loss and reward scaling."""
    return _run_trl("grpo", world, settings, seed, probe, output_dir)


def run_trl_rloo(world: ToyWorld, settings: BenchmarkSettings, seed: int, probe: OracleProbe, output_dir) -> dict:
    """``trl.RLOOTrainer`` with β = ``settings.kl_beta`` (KL penalty in the reward) and TRL's defaults."""
    return _run_trl("rloo", world, settings, seed, probe, output_dir)


CONTENDERS: list[Contender] = [
    Contender(
        key="trl_grpo",
        label="TRL GRPOTrainer (β)",
        family="kl",
        trainer="trl",
        run=run_trl_grpo,
        notes="GRPOTrainer defaults: DAPO loss, rewards scaled by the group std, per-token k3 KL in the loss; "
        "the std scaling changes the reward's scale, so the nominal target π_ref·exp(r_R/β) is not its fixed point",
    ),
    Contender(
        key="trl_rloo",
        label="TRL RLOOTrainer (β)",
        family="kl",
        trainer="trl",
        run=run_trl_rloo,
        notes="RLOOTrainer defaults: leave-one-out baseline, β·Σ log πθ/π_ref in the sequence reward, "
        "sequence-level clipped ratio, no advantage normalization",
    ),
]
