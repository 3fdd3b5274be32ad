"""What runs a table needs: scales, run specs and the per-table plans.

A run is identified by everything that changes its outcome (env, variant, std type, the hash of
its resolved training config, prior, steps, evaluation episodes, seed), so its id doubles as the path
of its result JSON and of its run directory: planning twice gives the same ids, which is what makes a sweep resumable.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rpg_control.reproduce import paper
from rpg_control.variants import CUSTOMIZATION_VARIANTS
from rpg_control.variants import VARIANTS as TRAINING_VARIANTS

PRIOR_EVALUATION = "prior"  # not a training run: the prior checkpoint evaluated on the full task


@dataclass(frozen=True)
class Scale:
    """How much of the paper's protocol a sweep runs (the same for every run of a table)."""

    name: str
    steps: int  # env steps per training run (Table I/III runs, Full Policy, customizations)
    seeds: int  # seeds per (env, variant)
    episodes: int  # deterministic evaluation episodes per run (per seed)

    @property
    def label(self) -> str:
        """Output folder name: the preset's name, or the exact numbers when they were overridden."""
        preset = SCALES.get(self.name)
        if preset is not None and preset == self:
            return self.name
        return f"steps{self.steps}-seeds{self.seeds}-episodes{self.episodes}"

    def describe(self) -> str:
        return (
            f"{self.steps:,} env steps per run, {self.seeds} seed(s), {self.episodes} evaluation episodes per seed "
            f"({self.seeds * self.episodes} per row)"
        )


SCALES = {
    # Appendix D: 5M steps for every run, 5 seeds, 500 evaluation episodes (100 per seed).
    "paper": Scale("paper", steps=5_000_000, seeds=5, episodes=100),
    # A first look in ~15 min for Table II on one env with one free core (see README, Job 3).
    "quick": Scale("quick", steps=150_000, seeds=2, episodes=5),
}


def make_scale(
    name: str = "paper", steps: int | None = None, seeds: int | None = None, episodes: int | None = None
) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of: {', '.join(SCALES)}")
    for label, value in (("--steps", steps), ("--seeds", seeds), ("--episodes", episodes)):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}")
    base = SCALES[name]
    return replace(
        base,
        steps=steps if steps is not None else base.steps,
        seeds=seeds if seeds is not None else base.seeds,
        episodes=episodes if episodes is not None else base.episodes,
    )


@dataclass(frozen=True)
class RunSpec:
    """One independent job: train (or, for ``prior``, only evaluate) and evaluate a policy."""

    env: str
    variant: str
    seed: int
    steps: int
    episodes: int
    state_std: bool = False  # Table III: state-dependent instead of global std
    prior: str | None = None  # checkpoint the customization starts from (and the ``prior`` row evaluates)
    prior_sha: str | None = None  # content hash of that checkpoint, part of the identity
    config_sha: str | None = None  # hash of the resolved training config: new defaults, new runs

    def __post_init__(self) -> None:
        if self.variant not in TRAINING_VARIANTS + (PRIOR_EVALUATION,):
            raise ValueError(f"unknown variant {self.variant!r}")
        needs_prior = self.variant in CUSTOMIZATION_VARIANTS + (PRIOR_EVALUATION,)
        if needs_prior != (self.prior is not None):
            raise ValueError(f"variant {self.variant!r} {'needs' if needs_prior else 'takes no'} prior checkpoint")

    @property
    def run_id(self) -> str:
        parts = [self.env, self.variant + ("-state-std" if self.state_std else "")]
        if self.config_sha:
            parts.append(f"cfg-{self.config_sha[:10]}")
        if self.prior_sha:
            parts.append(f"prior-{self.prior_sha[:12]}")
        parts += [f"{self.steps}steps-{self.episodes}episodes", f"seed{self.seed}"]
        return "/".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        return cls(**data)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_envs(envs: list[str]) -> list[str]:
    unknown = [env for env in envs if env not in paper.ENVS]
    if unknown:
        raise ValueError(f"unknown env(s) {', '.join(unknown)}; choose from: {', '.join(paper.ENVS)}")
    return list(dict.fromkeys(envs))


def basic_task_runs(env: str, variants, scale: Scale, state_std: bool = False) -> list[RunSpec]:
    return [
        RunSpec(env, variant, seed, scale.steps, scale.episodes, state_std=state_std)
        for variant in variants
        for seed in range(scale.seeds)
    ]


def table1_runs(envs: list[str], scale: Scale, variants=paper.TABLE1_VARIANTS) -> list[RunSpec]:
    """Table I: the entropy variants (all four, or the columns asked for) on the basic task, global std."""
    return [run for env in envs for run in basic_task_runs(env, variants, scale)]


def check_variants(table: int, variants: list[str] | None) -> tuple[str, ...]:
    """Table I's columns to run (``--variants``); the other tables run all of theirs."""
    if not variants:
        return paper.TABLE1_VARIANTS
    if table != 1:
        raise ValueError(f"--variants selects Table I columns; Table {table} runs all of its own")
    unknown = [v for v in variants if v not in paper.TABLE1_VARIANTS]
    if unknown:
        choices = ", ".join(paper.TABLE1_VARIANTS)
        raise ValueError(f"unknown Table I variant(s) {', '.join(unknown)}; choose from: {choices}")
    return tuple(v for v in paper.TABLE1_VARIANTS if v in variants)


def table3_runs(envs: list[str], scale: Scale) -> list[RunSpec]:
    """Table III: Soft PPO with global std (shared with Table I) and with state-dependent std."""
    runs = []
    for env in envs:
        runs += basic_task_runs(env, ["soft"], scale, state_std=False)
        runs += basic_task_runs(env, ["soft"], scale, state_std=True)
    return runs


def prior_candidate_runs(env: str, scale: Scale) -> list[RunSpec]:
    """The runs Table II's prior is picked from: Table I's Soft PPO runs (same scale)."""
    return basic_task_runs(env, ["soft"], scale)


def full_policy_runs(env: str, scale: Scale) -> list[RunSpec]:
    """Full Policy: Soft PPO on r + r_R from scratch (no prior)."""
    return basic_task_runs(env, ["full"], scale)


def customization_runs(env: str, scale: Scale, prior: str, prior_sha: str) -> list[RunSpec]:
    """Table II rows that start from the prior, plus the prior itself evaluated on the full task.

    The prior row pools ``seeds × episodes`` episodes of the one prior checkpoint, as many as any
    other row, so every row of the table rests on the same number of episodes.
    """
    runs = [RunSpec(env, PRIOR_EVALUATION, 0, 0, scale.seeds * scale.episodes, prior=prior, prior_sha=prior_sha)]
    for variant in CUSTOMIZATION_VARIANTS:
        runs += [
            RunSpec(env, variant, seed, scale.steps, scale.episodes, prior=prior, prior_sha=prior_sha)
            for seed in range(scale.seeds)
        ]
    return runs
