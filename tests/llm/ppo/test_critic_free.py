"""Residual RLOO / GRPO in the LM trainer: groups, no critic, resume, bad input, and TRL 1.16 RLOO equality."""

import pytest
import torch

from rpg.advantage import group_normalized_advantages, leave_one_out_advantages
from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.trainer import token_level_rewards
from rpg_llm.toy.world import ToyWorld, ToyWorldConfig

from .helpers import tiny_config, toy_trainer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # A random (undistilled) tiny Llama: completions stop at EOS at different lengths.
    config = ToyWorldConfig(
        vocab_size=6, completion_length=4, num_prompts=3, distill_steps=0, hidden_size=32, num_heads=2, seed=5
    )
    return ToyWorld.build(config, tmp_path_factory.mktemp("critic_free_world"), progress=False)


def _args(tmp_path, **overrides):
    return tiny_config(tmp_path, **{"advantage_estimator": "rloo", "num_generations": 4, **overrides})


def _trainer(world, args, **kwargs):
    return toy_trainer(world, args, **kwargs)


def _reference_logprobs(trainer, rollout):
    model, context = trainer._reference()
    with torch.no_grad(), context():
        return trainer._completion_logprobs(
            model, rollout["input_ids"], rollout["attention_mask"], rollout["position_ids"], rollout["completion_ids"]
        )


def _addon_scores(world, trainer, rollout):
    decode, width = world.tokenizer.decode, rollout["mask"].shape[1]
    texts = [decode(ids[m], skip_special_tokens=True) for ids, m in zip(rollout["completion_ids"], rollout["mask"])]
    prompt_ids, prompt_mask = rollout["input_ids"][:, :-width], rollout["attention_mask"][:, :-width].bool()
    prompts = [decode(ids[m], skip_special_tokens=True) for ids, m in zip(prompt_ids, prompt_mask)]
    return torch.tensor(world.reward_functions()[0](prompts, texts), dtype=torch.float32)


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_k_equal_one_is_refused_in_one_line(tmp_path, estimator):
    with pytest.raises(ValueError, match=f"num_generations must be >= 2 for advantage_estimator={estimator}") as error:
        _args(tmp_path, advantage_estimator=estimator, num_generations=1)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(advantage_estimator="vtrace"), "advantage_estimator must be one of"),
        (dict(num_generations=3), "must divide"),
        (dict(advantage_estimator="grpo", scale_rewards="prompt"), "scale_rewards must be one of"),
        (dict(value_model_path="some/critic"), "value_model_path"),
    ],
)
def test_bad_estimator_settings_fail_in_one_line(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match) as error:
        _args(tmp_path, **overrides)
    assert "\n" not in str(error.value)


def test_defaults_follow_trl():
    common = dict(output_dir="unused", per_device_train_batch_size=8, report_to=[])
    args = ResidualPPOConfig(advantage_estimator="rloo", **common)
    assert (args.num_generations, args.whiten_advantages) == (2, False)  # RLOOConfig: 2 generations, no normalization
    args = ResidualPPOConfig(advantage_estimator="grpo", scale_rewards="false", **common)
    assert (args.num_generations, args.scale_rewards) == (8, "none")  # GRPOConfig: 8 generations; False means "none"
    args = ResidualPPOConfig(**common)
    assert (args.advantage_estimator, args.num_generations, args.whiten_advantages) == ("gae", 1, True)


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_no_critic_exists_and_none_is_saved(world, tmp_path, estimator):
    trainer = _trainer(world, _args(tmp_path, advantage_estimator=estimator))
    names = [name for name, _ in trainer.model.named_parameters()]
    assert names and not [n for n in names if "critic" in n or "value_head" in n]
    policy_parameters = sum(p.numel() for p in trainer.policy.parameters())
    optimized = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    assert optimized == policy_parameters
    history = trainer.train()
    assert "loss/value" not in history[-1] and "value/mean" not in history[-1]
    trainer.save_model(tmp_path / "model")
    assert (tmp_path / "model" / "config.json").exists() and not (tmp_path / "model" / "critic").exists()


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_each_prompt_gets_k_completions_and_the_group_baseline(world, tmp_path, estimator):
    trainer = _trainer(world, _args(tmp_path, advantage_estimator=estimator, max_steps=1))
    k = trainer.args.num_generations
    indices = trainer._prompt_indices(0)
    assert len(indices) == trainer.args.local_batch_size
    assert all(len(set(indices[i : i + k])) == 1 for i in range(0, len(indices), k))
    rollout = trainer._rollout(trainer._prompt_batch(0), 0)
    mask = rollout["mask"]
    assert len({tuple(ids[m].tolist()) for ids, m in zip(rollout["completion_ids"], mask)}) > 1
    # eq. 8's sequence return, recomputed from the log-probs, against the rollout's advantages
    rewards = token_level_rewards(
        _addon_scores(world, trainer, rollout),
        rollout["old_logprobs"],
        _reference_logprobs(trainer, rollout),
        mask,
        trainer.coefficients,
    )
    returns = rewards.sum(-1)
    if estimator == "rloo":
        expected = leave_one_out_advantages(returns, k)
    else:
        expected = group_normalized_advantages(returns, k, "group")
    torch.testing.assert_close(rollout["advantages"], expected.unsqueeze(-1) * mask, atol=1e-5, rtol=1e-5)
    assert rollout["old_values"] is None and rollout["returns"] is None


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_checkpoint_resumes_to_the_same_weights(world, tmp_path, estimator):
    saving = dict(save_strategy="steps", save_steps=2)
    straight = _trainer(world, _args(tmp_path / "a", advantage_estimator=estimator, max_steps=3, **saving))
    straight.train()
    checkpoint = tmp_path / "a" / "out" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").exists()
    resumed = _trainer(world, _args(tmp_path / "b", advantage_estimator=estimator, max_steps=3))
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.iteration == 3 and len(resumed.log_history) == 3
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert resumed.log_history[-1]["reward/total"] == pytest.approx(straight.log_history[-1]["reward/total"])


def test_rloo_with_equal_coefficients_is_trl_rloo(world, tmp_path, monkeypatch):
    """ω' = α̂ = β: the sequence rewards and advantages of TRL 1.16's RLOOTrainer on the same completions.

    TRL's own code path (``RLOOTrainer._generate_and_score_completions``, default normalize_advantages=False)
    runs on our rollout's completions: only its generation is replaced; its log-probs (policy and reference
    forwards), rewards, KL penalty r − β·Σ(log πθ − log π_ref) and leave-one-out baseline are TRL's.
    """
    trl = pytest.importorskip("trl")
    from trl import RLOOConfig, RLOOTrainer
    from trl.trainer import rloo_trainer

    beta, k = 0.2, 4
    ours = _trainer(world, _args(tmp_path, omega_prime=beta, alpha_hat=beta, num_generations=k, max_steps=1))
    assert ours.args.whiten_advantages is False  # TRL's RLOO default: normalize_advantages=False
    batch = ours._prompt_batch(0)
    rollout = ours._rollout(batch, 0)
    mask = rollout["mask"]
    prompt_width = batch["input_ids"].shape[1]
    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(batch["input_ids"], batch["attention_mask"])]
    completion_ids = [ids[m].tolist() for ids, m in zip(rollout["completion_ids"], mask)]
    texts = [world.tokenizer.decode(ids, skip_special_tokens=True) for ids in completion_ids]
    assert rollout["input_ids"].shape[1] == prompt_width + mask.shape[1]

    trl_args = RLOOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=beta,
        num_generations=k,
        per_device_train_batch_size=len(texts),
        max_completion_length=mask.shape[1],
        use_cpu=True,
        bf16=False,
        report_to=[],
        max_steps=1,
    )
    theirs = RLOOTrainer(
        str(world.prior_model_dir),
        reward_funcs=world.reward_functions(),
        args=trl_args,
        train_dataset=world.prompt_dataset(repeats=3),
        processing_class=world.tokenizer,
    )
    assert theirs.beta == beta and theirs.normalize_advantages is False
    monkeypatch.setattr(theirs, "_generate", lambda prompts: (prompt_ids, completion_ids, texts))
    seen = {"gathered": []}
    original_gather, original_rewards = rloo_trainer.gather, theirs._calculate_rewards

    def gather(x):  # TRL gathers the per-sequence KL Σ_t(log πθ − log π_ref) before subtracting β times it
        seen["gathered"].append(original_gather(x))
        return seen["gathered"][-1]

    monkeypatch.setattr(rloo_trainer, "gather", gather)
    monkeypatch.setattr(theirs, "_calculate_rewards", lambda *a: seen.setdefault("r", original_rewards(*a)))
    theirs.model.train()
    output = theirs._generate_and_score_completions([{"prompt": p} for p in batch["columns"]["prompt"]])

    (kl,) = [x for x in seen["gathered"] if x.shape == (len(texts),) and x.is_floating_point()]
    trl_returns = seen["r"].sum(-1) - beta * kl  # TRL's sequence reward r − β·KL, from its own intermediates
    rewards = token_level_rewards(
        _addon_scores(world, ours, rollout),
        rollout["old_logprobs"],
        _reference_logprobs(ours, rollout),
        mask,
        ours.coefficients,
    )
    torch.testing.assert_close(rewards.sum(-1), trl_returns, atol=1e-5, rtol=1e-5)
    assert trl_returns.std() > 0.1  # the groups disagree: the advantages below are not all zero
    # the trainer's per-token advantages are TRL's sequence advantage on every real token
    torch.testing.assert_close(rollout["advantages"], output["advantages"].unsqueeze(-1) * mask, atol=1e-5, rtol=1e-5)
    assert trl.__version__.startswith("1.16")
