"""What the exact-oracle benchmark's harness and its contenders agree on.

A *contender* is one trainer with one objective (rpg Residual PPO, TRL's GRPOTrainer, DPO, …). It
starts from the toy world's distilled prior, may sample ``settings.completions`` completions in all
(the equal budget), and reports its progress to an :class:`OracleProbe`, which scores the model
against the contender's own exact target π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂) (docs/theory.md, eq. 8's
optimum) at evenly spaced numbers of completions sampled. The probe's clock counts training time
only: it stops while the probe evaluates.

One support for every contender: ``<pad>`` / ``<eos>`` are never sampled and carry no probability.
rpg's trainer does this itself (``suppress_token_ids``); for other trainers
:func:`restrict_to_content` makes the model's own output layer do it (a fixed bias), so their sampling,
their log-probs and the evaluation all see the same content-only law the exact targets are defined on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rpg_llm.toy.world import ToyWorld

__all__ = [
    "BenchmarkSettings",
    "CurvePoint",
    "OracleProbe",
    "Contender",
    "ContentRestriction",
    "restrict_to_content",
    "OnPolicySchedule",
    "ON_POLICY_SCHEDULE",
    "TRAINER_ARGS",
]


@dataclass(frozen=True)
class BenchmarkSettings:
    """Settings every contender shares (the same world, prompts, length and temperature 1)."""

    completions: int = 15_360  # sampled completions per contender and seed (the equal budget)
    evaluations: int = 8  # curve points after the one at 0 completions
    num_generations: int = 4  # completions per prompt for the group estimators (rpg RLOO/GRPO, TRL)
    kl_beta: float = 0.5  # the KL family's ω' = α̂ = β (TRL's β, DPO's β)
    residual_omega_prime: float = 0.5  # the Residual family's ω'
    residual_alpha_hat: float = 0.25  # the Residual family's α̂
    monte_carlo_samples: int = 4096  # per evaluation, when the world is too large to enumerate

    def __post_init__(self) -> None:
        if self.completions < 1:
            raise ValueError(f"completions must be >= 1, got {self.completions}")
        if self.evaluations < 1:
            raise ValueError(f"evaluations must be >= 1, got {self.evaluations}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (a group needs two), got {self.num_generations}")
        for name in ("kl_beta", "residual_alpha_hat"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.residual_omega_prime < 0:
            raise ValueError(f"residual_omega_prime must be >= 0, got {self.residual_omega_prime}")

    @property
    def kl_target(self) -> tuple[float, float]:
        """(ω', α̂) of the KL family's target π_prior·exp(r_R/β)."""
        return self.kl_beta, self.kl_beta

    @property
    def residual_target(self) -> tuple[float, float]:
        """(ω', α̂) of the Residual family's target π_prior^(ω'/α̂)·exp(r_R/α̂)."""
        return self.residual_omega_prime, self.residual_alpha_hat

    def evaluation_points(self) -> list[int]:
        """Numbers of completions sampled at which the probe evaluates: 0, …, ``completions``."""
        return [round(i * self.completions / self.evaluations) for i in range(self.evaluations + 1)]


@dataclass
class CurvePoint:
    completions: int  # completions sampled so far
    seconds: float  # training wall seconds so far (evaluation excluded)
    kl_to_target: float  # KL(πθ ‖ own exact target), nats
    kl_stderr: float  # 0 when exact (enumeration), else the Monte Carlo standard error
    basic: float  # expected fluency reward r
    addon: float  # expected add-on reward r_R

    def as_dict(self) -> dict:
        return asdict(self)


class OracleProbe:
    """Scores a contender's model against its exact target as training goes, on a training-only clock.

    Contenders call :meth:`start` right before their first sampling step, :meth:`observe` after each
    update with the number of completions sampled so far (it evaluates when that number reaches the
    next point of ``settings.evaluation_points()``), and :meth:`finish` with the final model.
    """

    def __init__(self, world: ToyWorld, settings: BenchmarkSettings, omega_prime: float, alpha_hat: float, seed: int):
        self.world, self.settings = world, settings
        self.omega_prime, self.alpha_hat, self.seed = omega_prime, alpha_hat, seed
        self.points: list[CurvePoint] = []
        self._pending = settings.evaluation_points()
        self._elapsed = 0.0
        self._since: float | None = None

    def start(self, model) -> None:
        """Evaluate the starting model (0 completions) and start the training clock."""
        self._evaluate(model, 0)
        self._pending = [p for p in self._pending if p > 0]
        self._since = time.perf_counter()

    def observe(self, model, completions: int) -> None:
        if self._since is None:
            raise RuntimeError("OracleProbe.observe before start(): the clock is not running")
        if self._pending and completions >= self._pending[0]:
            self._evaluate(model, completions)
            while self._pending and completions >= self._pending[0]:
                self._pending.pop(0)

    def finish(self, model, completions: int) -> list[CurvePoint]:
        """The last point (if ``observe`` has not just recorded it); returns the curve."""
        if not self.points or self.points[-1].completions != completions:
            self._evaluate(model, completions)
        self._since = None
        return self.points

    @property
    def seconds(self) -> float:
        """Training seconds so far (evaluations excluded)."""
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self._elapsed + running

    def _evaluate(self, model, completions: int) -> None:
        if self._since is not None:
            self._elapsed += time.perf_counter() - self._since
        stats = self.world.evaluate(
            model, self.omega_prime, self.alpha_hat, num_samples=self.settings.monte_carlo_samples, seed=self.seed
        )
        self.points.append(
            CurvePoint(
                completions=completions,
                seconds=self._elapsed,
                kl_to_target=stats["kl_to_target"],
                kl_stderr=stats["kl_stderr"],
                basic=stats["basic"],
                addon=stats["addon"],
            )
        )
        if self._since is not None:
            self._since = time.perf_counter()


@dataclass(frozen=True)
class OnPolicySchedule:
    """The schedule every sampling contender shares (rpg's PPO / RLOO / GRPO, TRL's GRPO / RLOO): completions
    per generation, AdamW steps per pass over a generation, passes over it, and the peak learning rate (decaying
    linearly to 0 at the budget's end).

    Pinned here, not read from the embedded toy job: the committed benchmark runs were made with it, and
    the toy job's own default may move for its five-minute budget (docs/toy_world.md).
    """

    generation_batch: int = 128
    mini_batches: int = 2
    passes: int = 4
    learning_rate: float = 1e-3


ON_POLICY_SCHEDULE = OnPolicySchedule()

# What every contender built on transformers' Trainer shares: fp32 on CPU, a linear decay of the learning
# rate to 0 at the budget's end, AdamW, nothing saved, evaluated or reported (the probe does the scoring),
# no recomputation (a tiny model: gradient checkpointing costs more than it saves).
TRAINER_ARGS = dict(
    lr_scheduler_type="linear",
    optim="adamw_torch",
    gradient_checkpointing=False,
    use_cpu=True,
    bf16=False,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    disable_tqdm=True,
    gradient_accumulation_steps=1,
)

# run(world, settings, seed, probe, output_dir) trains from world.prior_model_dir, reports to probe
# (start / observe / finish) and returns extra facts for the results file (hyperparameters, steps).
ContenderRun = Callable[[ToyWorld, BenchmarkSettings, int, OracleProbe, Path], dict]


@dataclass(frozen=True)
class Contender:
    key: str  # command-line name, e.g. "trl_grpo"
    label: str  # table / plot label, e.g. "TRL GRPOTrainer (β)"
    family: str  # "kl" or "residual": which exact target it is scored against
    trainer: str  # where the trainer comes from: "rpg", "trl", …
    run: ContenderRun
    notes: str = ""  # one line for the table: the loss, estimator, scaling
    extra: dict = field(default_factory=dict)

    def target(self, settings: BenchmarkSettings) -> tuple[float, float]:
        return settings.kl_target if self.family == "kl" else settings.residual_target


class ContentRestriction:
    """Undoes :func:`restrict_to_content` (``remove()``), like a hook handle."""

    def __init__(self, head, had_none_bias: bool):
        self._head, self._had_none_bias = head, had_none_bias

    def remove(self) -> None:
        del self._head._buffers["bias"]
        if self._had_none_bias:
            self._head.register_parameter("bias", None)


def restrict_to_content(model, special_token_ids: list[int]) -> ContentRestriction:
    """Give ``special_token_ids`` probability 0 in every use of ``model``'s output layer, in place.

    A fixed bias on the output embedding (a non-persistent buffer: not trained, not saved) holding the
    lowest finite float on those ids and 0 elsewhere. A bias rather than a forward hook because TRL 1.16's
    *fused* LM head (``trl.trainer.utils.add_fused_lm_head``: GRPO, RLOO and DPO log-probs) reads
    ``lm_head.weight`` / ``lm_head.bias`` itself and never calls the layer's forward; the bias reaches that
    path, ``generate`` and the probe alike. The lowest float absorbs any finite ``W·h`` (its spacing is
    ~10³¹), so those logits are exactly what rpg's ``suppress_tokens`` writes: the law is the model's
    renormalized over content tokens, and p·log p stays 0 (finite, not −inf).
    """
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError(f"the output embedding already has a bias ({type(head).__name__}); cannot restrict it")
    had_none_bias = "bias" in head._parameters
    if had_none_bias:
        del head._parameters["bias"]  # nn.Linear(bias=False) registers a None parameter under that name
    bias = torch.zeros(head.weight.shape[0], dtype=head.weight.dtype, device=head.weight.device)
    bias[list(special_token_ids)] = torch.finfo(bias.dtype).min
    head.register_buffer("bias", bias, persistent=False)
    return ContentRestriction(head, had_none_bias)
