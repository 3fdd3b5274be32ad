"""DPO, decoupled DPO and the CE loss on the toy token world, scored against exact targets.

Each :class:`PreferenceMethod` names a loss of :class:`~rpg_llm.dpo.trainer.DecoupledDPOTrainer`
and the exact policy it is scored against. Under Bradley–Terry preferences on r_R (paper App. B)
the population optimum of DPO with β is π ∝ π_prior·exp(r_R/β) (the RPG target with ω' = α̂ = β)
and that of decoupled DPO is π ∝ π_prior^(ω'/α̂)·exp(r_R/α̂) (eq. 25). The CE loss (eq. 24) has no
such closed form with these labels (each implicit reward is classified on its own, not a
difference); it shares DPO's reparameterized reward β·log πθ/π, so it is scored against DPO's
target — the policy that reward gives when it recovers r_R.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset

from rpg_llm.dpo.config import DecoupledDPOConfig
from rpg_llm.dpo.trainer import DecoupledDPOTrainer
from rpg_llm.report import markdown_table, print_table, write_result_files
from rpg_llm.toy.dpo_pairs import implicit_reward_accuracy
from rpg_llm.toy.world import ToyWorld, ToyWorldArguments

__all__ = [
    "PreferenceMethod",
    "default_methods",
    "train_preference_method",
    "evaluate_preference_method",
    "ToyDPOArguments",
    "run_toy_comparison",
    "print_tables",
    "write_results",
]


@dataclass(frozen=True)
class PreferenceMethod:
    name: str
    loss_type: str  # "sigmoid" (TRL's DPO), "decoupled" or "ce"
    beta: float
    alpha_hat: float | None = None  # decoupled only
    omega_prime: float | None = None  # decoupled only

    @property
    def target_coefficients(self) -> tuple[float, float]:
        """(ω', α̂) of the exact target this loss converges to."""
        if self.loss_type == "decoupled":
            return float(self.omega_prime), float(self.alpha_hat)
        return self.beta, self.beta

    def implicit_rewards(self, policy_log_probs: torch.Tensor, reference_log_probs: torch.Tensor) -> torch.Tensor:
        """The reward the loss fits: α̂·log πθ − ω'·log π (eq. 25), β·log πθ/π for DPO and CE (eq. 21)."""
        omega_prime, alpha_hat = self.target_coefficients
        return alpha_hat * policy_log_probs - omega_prime * reference_log_probs

    def describe(self) -> str:
        if self.loss_type == "decoupled":
            return f"α̂={self.alpha_hat:g}, ω'={self.omega_prime:g}"
        return f"β={self.beta:g}"


def default_methods(
    beta: float, alpha_hat: float, omega_prime: float, names: list[str] | None = None
) -> list[PreferenceMethod]:
    methods = {
        "dpo": PreferenceMethod("DPO", "sigmoid", beta),
        "decoupled": PreferenceMethod("decoupled DPO", "decoupled", beta, alpha_hat, omega_prime),
        "ce": PreferenceMethod("CE (implicit reward)", "ce", beta),
    }
    names = names or list(methods)
    unknown = sorted(set(names) - set(methods))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(methods)}")
    return [methods[name] for name in names]


def train_preference_method(
    world: ToyWorld,
    method: PreferenceMethod,
    train_pairs: Dataset,
    output_dir: str | Path,
    *,
    max_steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int = 0,
    progress: bool = True,
):
    """Fine-tune the world's prior model with ``method`` on ``train_pairs``; returns the trained model.

    Completions have a fixed length in the toy world, so they carry no EOS (``completion_eos=False``).
    """
    args = DecoupledDPOConfig(
        output_dir=str(output_dir),
        loss_type=[method.loss_type],
        beta=method.beta,
        alpha_hat=method.alpha_hat,
        omega_prime=method.omega_prime,
        completion_eos=False,
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        gradient_checkpointing=False,  # a tiny model: recomputation costs more than it saves
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, max_steps // 5),
        disable_tqdm=not progress,
        seed=seed,
        data_seed=seed,
    )
    trainer = DecoupledDPOTrainer(
        str(world.prior_model_dir), args=args, train_dataset=train_pairs, processing_class=world.tokenizer
    )
    trainer.train()
    return trainer.model.eval()


@torch.no_grad()
def evaluate_preference_method(
    world: ToyWorld,
    model,
    method: PreferenceMethod,
    heldout_pairs: Dataset,
    reference_log_probs: torch.Tensor,
) -> dict:
    """Held-out implicit-reward accuracy, basic / add-on / total reward and KL to the method's target.

    All exact, by enumerating every completion: ``reference_log_probs`` is ``world.model_log_probs``
    of the reference (prior) model. ``kl_to_prior`` is KL(πθ ‖ exact prior).
    """
    omega_prime, alpha_hat = method.target_coefficients
    policy_log_probs = world.model_log_probs(model)
    scores = world.evaluate_log_probs(policy_log_probs, omega_prime, alpha_hat)
    accuracy = implicit_reward_accuracy(method.implicit_rewards(policy_log_probs, reference_log_probs), heldout_pairs)
    return {
        "implicit_reward_accuracy": accuracy,
        "basic": scores["basic"],
        "addon": scores["addon"],
        "total": scores["total"],
        "kl_to_target": scores["kl_to_target"],
        "kl_to_prior": scores["kl_to_prior"],
        "off_support_mass": scores["off_support_mass"],
    }


@dataclass
class ToyDPOArguments(ToyWorldArguments):
    """The embedded default of ``rpg dpo``: which methods, how many pairs, which toy world.

    The training hyperparameters (``beta``, ``alpha_hat``, ``omega_prime``, ``learning_rate``,
    ``max_steps``, ``per_device_train_batch_size``, ``seed``) come from DecoupledDPOConfig.
    World fields carry the same names as the PPO job's, so both jobs share one cached world.
    """

    methods: list[str] = field(
        default_factory=lambda: ["dpo", "decoupled", "ce"], metadata={"help": "subset of dpo, decoupled, ce"}
    )
    num_train_pairs: int = field(
        default=20000, metadata={"help": "Bradley–Terry-labelled pairs sampled from the prior to train on"}
    )
    num_heldout_pairs: int = field(default=2000, metadata={"help": "held-out pairs for the implicit-reward accuracy"})
    pair_seed: int = field(
        default=0, metadata={"help": "seed of the training pairs (held-out pairs use pair_seed + 1)"}
    )

    def __post_init__(self) -> None:
        default_methods(0.1, 0.1, 0.1, self.methods)  # one clear error for an unknown method
        for name in ("num_train_pairs", "num_heldout_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        super().__post_init__()


def run_toy_comparison(
    world: ToyWorld,
    methods: list[PreferenceMethod],
    train_pairs: Dataset,
    heldout_pairs: Dataset,
    output_dir: str | Path,
    *,
    max_steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train each method from the prior model and score it exactly; returns table rows and targets."""
    prior_model = world.load_prior_model().eval()
    reference_log_probs = world.model_log_probs(prior_model)
    prior_scores = world.evaluate_log_probs(reference_log_probs)
    _, addon = world.completion_rewards()
    rows = [
        {
            "method": "true r_R (ceiling)",
            "coefficients": "ties = ½",
            "implicit_reward_accuracy": implicit_reward_accuracy(addon, heldout_pairs, tie=0.5),
        },
        {
            "method": "prior (reference)",
            "coefficients": f"α={world.config.alpha:g}",
            "basic": prior_scores["basic"],
            "addon": prior_scores["addon"],
            "total": prior_scores["total"],
            "kl_to_prior": prior_scores["kl_to_prior"],
        },
    ]
    targets = []
    for method in methods:
        omega_prime, alpha_hat = method.target_coefficients
        start = world.evaluate_log_probs(reference_log_probs, omega_prime, alpha_hat)
        target = world.evaluate_log_probs(world.exact_target_log_probs(omega_prime, alpha_hat))
        targets.append(
            {
                "method": method.name,
                "target": f"π_prior^{omega_prime / alpha_hat:g}·exp(r_R/{alpha_hat:g})",
                "basic": target["basic"],
                "addon": target["addon"],
                "total": target["total"],
                "kl_to_prior": target["kl_to_prior"],
            }
        )
        model = train_preference_method(
            world,
            method,
            train_pairs,
            Path(output_dir) / method.loss_type,
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
        scores = evaluate_preference_method(world, model, method, heldout_pairs, reference_log_probs)
        rows.append(
            {
                "method": method.name,
                "coefficients": method.describe(),
                "kl_to_target_at_start": start["kl_to_target"],
                **scores,
            }
        )
    return {"rows": rows, "targets": targets}


RESULT_COLUMNS = [
    ("method", "method"),
    ("coefficients", "coefficients"),
    ("implicit_reward_accuracy", "held-out implicit-reward acc"),
    ("basic", "basic r"),
    ("addon", "add-on r_R"),
    ("total", "total"),
    ("kl_to_target", "KL(π‖own target)"),
    ("kl_to_target_at_start", "KL(prior model‖own target)"),
    ("kl_to_prior", "KL(π‖exact prior)"),
]
TARGET_COLUMNS = [
    ("method", "exact target of"),
    ("target", "π*"),
    ("basic", "basic r"),
    ("addon", "add-on r_R"),
    ("total", "total"),
    ("kl_to_prior", "KL(π*‖exact prior)"),
]


def print_tables(result: dict) -> None:
    for rows, columns, title in (
        (result["rows"], RESULT_COLUMNS, "DPO, decoupled DPO and CE on the toy token world"),
        (
            result["targets"],
            TARGET_COLUMNS,
            "Exact targets (DPO's and decoupled DPO's optima; CE is scored against DPO's)",
        ),
    ):
        print_table(rows, columns, title, text_keys=("method", "coefficients", "target"), width=150)


def write_results(result: dict, results_dir: str | Path, name: str, facts: dict) -> tuple[Path, Path]:
    """``<name>.md`` and ``<name>.json`` under ``results_dir``, each written atomically."""
    md = "\n".join(
        [
            "# DPO, decoupled DPO and the implicit-reward CE loss on the toy token world",
            "",
            "Pairs of completions are sampled from the exact prior and labelled by Bradley–Terry on the true add-on",
            "reward r_R; each method fine-tunes the distilled prior model on them. Implicit-reward accuracy "
            "is on held-out",
            "pairs; rewards and KL(π‖own exact target) are exact (every completion enumerated). Targets "
            "(population optima",
            "under these labels): DPO with β → π_prior·exp(r_R/β); decoupled DPO (eq. 25) → π_prior^(ω'/α̂)·exp(r_R/α̂).",
            "The CE loss (eq. 24) has no closed-form optimum here; it is scored against DPO's target, whose reward",
            "β·log π/π_prior it shares.",
            "",
            markdown_table(result["rows"], RESULT_COLUMNS),
            "",
            markdown_table(result["targets"], TARGET_COLUMNS),
            "",
            "Provenance: " + ", ".join(f"{key}={value}" for key, value in facts.items()),
            "",
        ]
    )
    return write_result_files(results_dir, name, md, {"provenance": facts, **result})
