"""The exact-oracle benchmark's TRL and preference contenders (rpg_llm/toy/oracle_benchmark/trl_contenders.py,
preference_contenders.py): completion counting, one support, curves from the prior to the full budget."""

from __future__ import annotations

import pytest
import torch

from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings, OracleProbe, restrict_to_content
from rpg_llm.toy.oracle_benchmark.preference_contenders import CONTENDERS as PREFERENCE_CONTENDERS
from rpg_llm.toy.oracle_benchmark.preference_contenders import (
    PAIRS_PER_STEP,
    build_preference_trainer,
    preference_coefficients,
)
from rpg_llm.toy.oracle_benchmark.trl_contenders import CONTENDERS as TRL_CONTENDERS
from rpg_llm.toy.oracle_benchmark.trl_contenders import build_trl_trainer, trl_schedule

TINY = BenchmarkSettings(completions=64, evaluations=2)


class RecordingProbe(OracleProbe):
    """An OracleProbe that also records every count it is shown."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.observed: list[int] = []

    def observe(self, model, completions: int) -> None:
        self.observed.append(completions)
        super().observe(model, completions)


def content_log_probs(world, ids: torch.Tensor) -> torch.Tensor:
    """log π(y_t | y_<t) of the raw prior renormalized over content tokens, [N, T−1] (the target's law)."""
    s, V = world.num_special, world.vocab_size
    with torch.no_grad():
        logits = world.load_prior_model()(input_ids=ids).logits[:, :-1, s : s + V]
    return torch.log_softmax(logits, -1).gather(-1, (ids[:, 1:] - s).unsqueeze(-1)).squeeze(-1)


def content_sequences(world, n: int = 6) -> torch.Tensor:
    """A prompt followed by n − 1 content words, ids [num_prompts, len(prompt) + n − 1]."""
    words = (torch.arange(n - 1) * 3) % world.vocab_size + world.num_special
    return torch.stack([torch.cat([torch.tensor(row) + world.num_special, words]) for row in world.prompt_words])


# ------------------------------------------------------------------ schedules (fast)
def test_trl_schedule_matches_the_toy_ppo_budget():
    schedule = trl_schedule(BenchmarkSettings())  # 15,360 completions = 120 iterations of 128, as toy PPO
    assert (schedule.generation_batch, schedule.generations, schedule.max_steps) == (128, 120, 960)
    assert (schedule.micro_batch, schedule.steps_per_cycle, schedule.completions) == (64, 8, 15_360)
    # TRL samples a generation at the first step of each cycle of 8 steps
    assert [schedule.completions_after(k) for k in (1, 8, 9, 16, 960)] == [128, 128, 256, 256, 15_360]
    tiny = trl_schedule(TINY)
    assert (tiny.generation_batch, tiny.generations, tiny.max_steps) == (64, 1, 8)
    assert trl_schedule(BenchmarkSettings(completions=300)).completions == 256  # whole generations only
    with pytest.raises(ValueError, match="completions=7 is below one generation of 8"):
        trl_schedule(BenchmarkSettings(completions=7))


class _Captured(Exception):
    """Raised by a stand-in trainer builder to hand back the config run_rpg resolved, before any training."""


@pytest.mark.parametrize("kind", ["ppo", "rloo", "grpo"])
def test_rpg_contenders_train_on_the_pinned_schedule_not_the_toy_jobs_default(monkeypatch, tmp_path, kind):
    # The committed benchmark runs used 128 completions × (2 mini-batches × 4 epochs) at 1e-3, GRPO per group:
    # the toy job's own default may move for its five-minute budget without changing what the benchmark runs.
    from types import SimpleNamespace

    from rpg_llm.ppo import cli as ppo_cli
    from rpg_llm.toy import ppo_job
    from rpg_llm.toy.oracle_benchmark.rpg_contenders import run_rpg

    def capture(world, args, callbacks=None):
        raise _Captured(args)

    retuned = {"per_device_train_batch_size": 7, "num_mini_batches": 3, "num_ppo_epochs": 9, "learning_rate": 0.5}
    monkeypatch.setattr(ppo_cli, "TOY_DEFAULTS", {**ppo_cli.TOY_DEFAULTS, **retuned, "lr_scheduler_type": "cosine"})
    monkeypatch.setattr(ppo_job, "toy_ppo_trainer", capture)
    world = SimpleNamespace(completion_length=4, special_token_ids=[0, 1])
    with pytest.raises(_Captured) as captured:
        run_rpg(world, BenchmarkSettings(), 0, None, tmp_path, family="residual", kind=kind)
    args, trl = captured.value.args[0], trl_schedule(BenchmarkSettings())
    assert args.local_batch_size == trl.generation_batch == 128 and args.gradient_accumulation_steps == 1
    assert (args.num_mini_batches, args.num_ppo_epochs) == (trl.steps_per_generation, trl.num_iterations) == (2, 4)
    assert (
        args.learning_rate == 1e-3 and str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == "linear"
    )
    assert args.max_steps == 120 and args.scale_rewards == "group"  # 15,360 / 128; GRPO as TRL ships it


def test_retuning_the_toy_jobs_schedule_keeps_the_benchmarks_run_key(monkeypatch):
    from rpg_llm.ppo import cli as ppo_cli
    from rpg_llm.toy.oracle_benchmark.rpg_contenders import trainer_settings

    before = trainer_settings()
    retuned = {"per_device_train_batch_size": 7, "num_ppo_epochs": 9, "max_steps": 3, "learning_rate": 0.5}
    monkeypatch.setattr(ppo_cli, "TOY_DEFAULTS", {**ppo_cli.TOY_DEFAULTS, **retuned})
    assert trainer_settings() == before
    monkeypatch.setattr(ppo_cli, "TOY_DEFAULTS", {**ppo_cli.TOY_DEFAULTS, "vf_coef": 0.25})  # one run_rpg keeps
    assert trainer_settings() != before


def test_preference_coefficients_follow_the_families():
    settings = BenchmarkSettings(kl_beta=0.3, residual_omega_prime=0.6, residual_alpha_hat=0.2)
    assert preference_coefficients("sigmoid", settings) == {"beta": 0.3, "alpha_hat": None, "omega_prime": None}
    assert preference_coefficients("ce", settings)["beta"] == 0.3
    assert preference_coefficients("decoupled", settings) == {"beta": 0.2, "alpha_hat": 0.2, "omega_prime": 0.6}
    with pytest.raises(ValueError, match="unknown preference loss_type 'ipo'"):
        preference_coefficients("ipo", settings)


def test_contenders_name_their_families():
    table = {c.key: c for c in TRL_CONTENDERS + PREFERENCE_CONTENDERS}
    assert list(table) == ["trl_grpo", "trl_rloo", "dpo", "decoupled_dpo", "ce"]
    assert {k: c.family for k, c in table.items()} == {
        "trl_grpo": "kl",
        "trl_rloo": "kl",
        "dpo": "kl",
        "decoupled_dpo": "residual",
        "ce": "kl",
    }
    assert "DPO's target" in table["ce"].notes


# ------------------------------------------------------------------ one support
def test_head_restriction_reaches_the_fused_lm_head(toy_world):
    """TRL's fused LM head reads lm_head.weight / .bias itself (no forward, no hooks): the bias of
    restrict_to_content makes its log-probs the content-only law."""
    from trl.trainer.utils import add_fused_lm_head

    world = toy_world()
    ids = content_sequences(world)
    expected = content_log_probs(world, ids)
    model = world.load_prior_model()
    add_fused_lm_head(model)
    raw = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs.detach()
    assert (raw - expected).abs().max() > 1e-3  # the raw prior gives <pad>/<eos> some mass
    restrict_to_content(model, world.special_token_ids)
    fused = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs.detach()
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)
    probs = torch.softmax(model(input_ids=ids).logits, -1)  # the generate / probe path
    assert probs[..., world.special_token_ids].max() == 0


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_trl_reference_log_probs_are_content_only(toy_world, tmp_path, kind):
    """The reference TRL builds inside the trainer, through TRL's own log-prob path, and the policy."""
    world = toy_world()
    trainer, _ = build_trl_trainer(kind, world, TINY, 0, tmp_path)
    ids = content_sequences(world)
    keep = ids.shape[1] - len(world.prompt_words[0])
    expected = content_log_probs(world, ids)[:, -keep:]
    for model in (trainer.ref_model, trainer.model):
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, torch.ones_like(ids), keep)
        torch.testing.assert_close(logps, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("loss_type", ["sigmoid", "decoupled"])
def test_dpo_policy_and_reference_are_content_only(toy_world, tmp_path, loss_type):
    world = toy_world()
    trainer, pairs = build_preference_trainer(loss_type, world, TINY, 0, tmp_path)
    assert pairs == 32
    ids = content_sequences(world)
    expected = content_log_probs(world, ids)
    for model in (trainer.ref_model, trainer.model):
        with torch.no_grad():
            fused = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs
        torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ runs (slow: each trains)
def _run(contender, world, settings, tmp_path):
    omega_prime, alpha_hat = contender.target(settings)
    probe = RecordingProbe(world, settings, omega_prime, alpha_hat, seed=0)
    facts = contender.run(world, settings, 0, probe, tmp_path)
    prior_kl = world.evaluate(world.load_prior_model(), omega_prime, alpha_hat)["kl_to_target"]
    return probe, facts, prior_kl


@pytest.mark.slow
@pytest.mark.parametrize("key", ["trl_grpo", "trl_rloo"])
def test_trl_contender_counts_what_the_reward_function_saw(toy_world, tmp_path, monkeypatch, key):
    """Two generations of 128: the probe's counts equal the completions the reward function scored, none of
    which contains <pad>/<eos>; the curve runs from the prior's KL to the full budget."""
    world = toy_world()
    settings = BenchmarkSettings(completions=256, evaluations=2)
    scored: list[list[int]] = []
    reward = world.reward_functions()[0]

    def counting_reward(prompts, completions, completion_ids, **kwargs):
        scored.extend(completion_ids)
        return reward(prompts, completions, **kwargs)

    monkeypatch.setattr(world, "reward_functions", lambda: [counting_reward])
    contender = next(c for c in TRL_CONTENDERS if c.key == key)
    probe, facts, prior_kl = _run(contender, world, settings, tmp_path)
    assert probe.observed == [128, 256]  # after the 8th and 16th optimizer steps
    assert probe.observed[-1] == len(scored) == facts["completions"] == 256
    assert facts["optimizer_steps"] == 16 and facts["beta"] == settings.kl_beta
    assert all(len(ids) == world.completion_length for ids in scored)
    assert not any(t in world.special_token_ids for ids in scored for t in ids)
    assert [p.completions for p in probe.points] == [0, 128, 256]
    assert probe.points[0].kl_to_target == pytest.approx(prior_kl, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["dpo", "decoupled_dpo", "ce"])
def test_preference_contender_consumes_each_pair_once(toy_world, tmp_path, key):
    """100 completions = 50 pairs = a step of 32 and a step of 18: counts 64 and 100, then the curve ends
    at the full budget and starts at the prior's KL to the contender's own target."""
    world = toy_world()
    settings = BenchmarkSettings(completions=100, evaluations=2)
    contender = next(c for c in PREFERENCE_CONTENDERS if c.key == key)
    probe, facts, prior_kl = _run(contender, world, settings, tmp_path)
    assert PAIRS_PER_STEP == 32 and probe.observed == [64, 100]
    assert (facts["pairs"], facts["completions"], facts["optimizer_steps"]) == (50, 100, 2)
    assert [p.completions for p in probe.points] == [0, 64, 100]
    assert probe.points[0].kl_to_target == pytest.approx(prior_kl, abs=1e-9)
    assert probe.points[-1].kl_to_target != probe.points[0].kl_to_target  # it trained
