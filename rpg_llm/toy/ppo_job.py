"""The embedded default job: customize the toy world's prior with Greedy, KL and Residual PPO,
and with Residual RLOO / GRPO (the same (ω', α̂) as Residual PPO, no critic; docs/llm_critic_free.md).

The token-domain twin of the paper's Table II: each method starts from the distilled prior and
optimizes the add-on reward r_R ("mention these words") with its own (ω', α̂); each is scored on
basic (fluency), add-on and total reward and on KL(πθ ‖ its exact target) — computable here
because the prior's reward r is known (docs/theory.md §2, docs/toy_world.md).

One support: every method samples and scores with ``<pad>`` / ``<eos>`` suppressed (``suppress_token_ids``),
so what PPO optimizes lives on the content-only completions its exact target is defined on; the table
reports the mass the raw model would put outside them (docs/toy_world.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.report import markdown_table, print_table, write_result_files
from rpg_llm.toy.world import ToyWorld, ToyWorldArguments

__all__ = [
    "ToyExperimentArguments",
    "METHODS",
    "method_coefficients",
    "default_ppo_config",
    "method_config",
    "run_toy_comparison",
    "toy_ppo_trainer",
    "print_results",
    "write_results",
]

# method -> (row label, coefficient family (its exact target), advantage estimator)
METHODS = {
    "greedy": ("Greedy", "greedy", "gae"),
    "kl": ("KL", "kl", "gae"),
    "residual": ("Residual", "residual", "gae"),
    "residual_rloo": ("Residual RLOO", "residual", "rloo"),
    "residual_grpo": ("Residual GRPO", "residual", "grpo"),
}


@dataclass
class ToyExperimentArguments(ToyWorldArguments):
    """Which methods to run on the toy world, with which (ω', α̂), and the world to build."""

    methods: list[str] = field(
        default_factory=lambda: list(METHODS), metadata={"help": "subset of " + ", ".join(METHODS)}
    )
    greedy_alpha_hat: float = field(default=0.5, metadata={"help": "Greedy PPO: ω' = 0, this α̂"})
    kl_beta: float = field(default=0.5, metadata={"help": "KL PPO (classic RLHF): ω' = α̂ = β"})
    residual_omega_prime: float = field(default=0.5, metadata={"help": "Residual PPO ω'"})
    residual_alpha_hat: float = field(default=0.25, metadata={"help": "Residual PPO α̂"})
    group_num_generations: int = field(
        default=4, metadata={"help": "completions per prompt of the residual_rloo / residual_grpo rows (k)"}
    )
    grpo_scale_rewards: str = field(
        default="batch",
        metadata={
            "help": "the residual_grpo row's std scaling (group | batch | none). batch: at eq. 8's optimum every "
            "completion of a prompt has the same return, so a per-group std shrinks to 0 and keeps the iterate "
            "moving (docs/llm_critic_free.md)"
        },
    )

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
        from rpg.advantage import GROUP_SCALINGS
        from rpg_llm.ppo.config import scale_rewards_from_trl

        self.grpo_scale_rewards = scale_rewards_from_trl(self.grpo_scale_rewards)  # as ResidualPPOConfig takes it
        if self.grpo_scale_rewards not in GROUP_SCALINGS:
            raise ValueError(f"grpo_scale_rewards must be one of {GROUP_SCALINGS}, got {self.grpo_scale_rewards!r}")
        if self.group_num_generations < 2:
            raise ValueError(
                f"group_num_generations must be >= 2 (RLOO / GRPO need a group), got {self.group_num_generations}"
            )
        method_coefficients(self)  # validates the coefficients (one clear error)
        super().__post_init__()


def method_coefficients(experiment: ToyExperimentArguments) -> dict[str, tuple[float, float]]:
    """(ω', α̂) per method, validated by rpg.reward.RewardCoefficients; RLOO / GRPO share Residual's."""
    from rpg.reward import RewardCoefficients

    table = {
        "greedy": RewardCoefficients.greedy(experiment.greedy_alpha_hat),
        "kl": RewardCoefficients.kl(experiment.kl_beta),
        "residual": RewardCoefficients.residual(experiment.residual_omega_prime, experiment.residual_alpha_hat),
    }
    for name, c in table.items():
        if c.alpha_hat <= 0:
            raise ValueError(f"{name}: alpha_hat must be > 0 (the exact target needs a temperature)")
    return {
        name: (table[family].omega_prime, table[family].alpha_hat)
        for name, (_, family, _) in METHODS.items()
        if name in experiment.methods
    }


def run_toy_comparison(
    experiment: ToyExperimentArguments, ppo_args: ResidualPPOConfig, world: ToyWorld | None = None
) -> dict:
    """Train each method from the prior and evaluate it exactly; returns the rows and run facts."""

    world = world or ToyWorld.build(experiment.world_config(), experiment.world_cache_dir)
    coefficients = method_coefficients(experiment)
    prior = world.load_prior_model()
    rows: list[dict] = []
    prior_row = {"method": "Prior", "omega_prime": None, "alpha_hat": None}
    prior_stats = world.evaluate(prior, omega_prime=world.config.alpha, alpha_hat=world.config.alpha)
    prior_row.update({k: prior_stats[k] for k in ("basic", "addon", "total", "kl_to_prior", "off_support_mass")})
    prior_row["kl_to_target"] = None
    for name, (omega_prime, alpha_hat) in coefficients.items():
        prior_row[f"kl_to_{name}_target"] = world.evaluate(prior, omega_prime, alpha_hat)["kl_to_target"]
    rows.append(prior_row)
    histories = {}
    for name, (omega_prime, alpha_hat) in coefficients.items():
        args = _method_args(ppo_args, experiment, name, omega_prime, alpha_hat, world)
        started = time.perf_counter()
        trainer = toy_ppo_trainer(world, args)
        history = trainer.train()
        stats = world.evaluate(trainer.policy, omega_prime, alpha_hat)
        rows.append(
            {
                "method": METHODS[name][0],
                "omega_prime": omega_prime,
                "alpha_hat": alpha_hat,
                **{k: stats[k] for k in ("basic", "addon", "total", "kl_to_prior", "kl_to_target", "off_support_mass")},
                "kl_stderr": stats["kl_stderr"],  # 0 when exact (enumeration), else the Monte Carlo standard error
                "kl_to_target_at_start": prior_row[f"kl_to_{name}_target"],
                "train_seconds": time.perf_counter() - started,
                "iterations": len(history),
            }
        )
        histories[name] = history
    targets = {METHODS[name][1]: coefficients[name] for name in coefficients}  # one row per exact target
    for family, (omega_prime, alpha_hat) in targets.items():
        target = world.exact_policy_statistics(omega_prime, alpha_hat)  # dynamic programming, any V and L
        label = METHODS[family][0]
        rows.append(
            {
                "method": f"target: {label}",
                "omega_prime": omega_prime,
                "alpha_hat": alpha_hat,
                **{k: target[k] for k in ("basic", "addon", "total", "kl_to_prior", "off_support_mass")},
                "kl_to_target": 0.0,
            }
        )
    return {
        "rows": rows,
        "world": dataclasses.asdict(world.config),
        "world_facts": {
            "prompts": world.prompts,
            "target_words": [world.words[i] for i in world.target_words],
            "prior_kl_to_exact_prior (floor)": prior_row["kl_to_prior"],
            "suppressed_token_ids": world.special_token_ids,
            "greedy_optimum_mass_on_special_tokens_without_suppression": (
                world.greedy_mass_on_special_tokens(coefficients["greedy"][1]) if "greedy" in coefficients else None
            ),
            "directory": str(world.directory),
        },
        "histories": histories,
    }


def toy_ppo_trainer(world: ToyWorld, args: ResidualPPOConfig, callbacks=None):
    """A ``ResidualPPOTrainer`` on the world's prior, prompts and add-on reward r_R (the one way to build it)."""
    from rpg_llm.ppo.trainer import ResidualPPOTrainer

    return ResidualPPOTrainer(
        args,
        str(world.prior_model_dir),
        processing_class=world.tokenizer,
        train_dataset=world.prompt_dataset(),
        reward_funcs=world.reward_functions(),
        callbacks=callbacks,
    )


def default_ppo_config(**overrides) -> ResidualPPOConfig:
    """The embedded default job's PPO settings (``rpg_llm.ppo.cli.TOY_DEFAULTS``, the values of
    ``recipes/configs/residual_ppo_toy.yaml``) with ``overrides``: one source for every toy-world PPO run."""
    from rpg_llm.ppo.cli import TOY_DEFAULTS

    return ResidualPPOConfig(**{**TOY_DEFAULTS, **overrides})


def method_config(
    ppo_args: ResidualPPOConfig,
    omega_prime: float,
    alpha_hat: float,
    estimator: str,
    num_generations: int,
    world: ToyWorld,
    output_dir: str | Path,
) -> ResidualPPOConfig:
    """The shared PPO settings with one method's (ω', α̂) and estimator, ``<pad>`` / ``<eos>`` suppressed.

    RLOO / GRPO roll out as many completions per iteration as PPO's (``num_generations`` per prompt) and
    take TRL's defaults for their estimator: no advantage whitening.
    """
    group = {}
    if estimator != "gae":
        group = dict(num_generations=num_generations, whiten_advantages=False)
    return dataclasses.replace(
        ppo_args,
        omega_prime=omega_prime,
        alpha_hat=alpha_hat,
        kl_coef=None,
        response_length=world.completion_length,
        suppress_token_ids=world.special_token_ids,  # one support: the targets' content-only completions
        output_dir=str(output_dir),
        advantage_estimator=estimator,
        **group,
    )


def _method_args(ppo_args, experiment, name, omega_prime, alpha_hat, world: ToyWorld) -> ResidualPPOConfig:
    """:func:`method_config` of the toy job's method ``name`` (RLOO / GRPO: ``group_num_generations``;
    GRPO: ``grpo_scale_rewards``)."""
    estimator = METHODS[name][2]
    output_dir = Path(ppo_args.output_dir) / name
    args = method_config(
        ppo_args, omega_prime, alpha_hat, estimator, experiment.group_num_generations, world, output_dir
    )
    if estimator == "grpo":
        args = dataclasses.replace(args, scale_rewards=experiment.grpo_scale_rewards)
    return args


COLUMNS = [
    ("method", "method"),
    ("omega_prime", "ω'"),
    ("alpha_hat", "α̂"),
    ("basic", "basic r"),
    ("addon", "add-on r_R"),
    ("total", "total"),
    ("kl_to_target", "KL(π‖own target)"),
    ("kl_stderr", "± s.e."),
    ("kl_to_target_at_start", "same, prior"),
    ("kl_to_prior", "KL(π‖exact prior)"),
    ("off_support_mass", "raw mass off support"),
]


def print_results(rows: list[dict], title: str) -> None:
    print_table(rows, COLUMNS, title)


def write_results(result: dict, results_dir: str | Path, name: str, facts: dict) -> tuple[Path, Path]:
    """``<name>.md`` and ``<name>.json`` under ``results_dir``, each written atomically."""
    payload = {"provenance": facts, **{k: v for k, v in result.items() if k != "histories"}}
    payload["histories"] = {
        k: [{m: h[m] for m in ("iteration", "reward/addon", "objective/kl_to_ref", "objective/entropy")} for h in v]
        for k, v in result.get("histories", {}).items()
    }
    md = [
        "# Residual PPO on the toy token world",
        "",
        "Each method starts from the distilled prior and optimizes the add-on reward r_R with its own (ω', α̂);",
        "KL is to that method's exact target π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂) (exact: enumeration for the",
        "trained models, dynamic programming for the target rows). Every method samples and scores with",
        '<pad>/<eos> suppressed, the targets\' support (content-only completions); "raw mass off support" is',
        "what the unsuppressed model would give to completions with <pad>/<eos>. See docs/toy_world.md.",
        "Residual RLOO / GRPO: Residual's (ω', α̂) and target, no critic, the same completions per iteration",
        f"(k per prompt); GRPO's std scaling: {facts.get('residual_grpo_scale_rewards', 'group')}; see",
        "docs/llm_critic_free.md.",
        "",
        markdown_table(result["rows"], COLUMNS),
        "",
        f"World: {json.dumps(result['world_facts'])}",
        "",
        "Provenance: " + ", ".join(f"{k}={v}" for k, v in facts.items()),
        "",
    ]
    return write_result_files(results_dir, name, "\n".join(md), payload)
