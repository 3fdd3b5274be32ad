"""ResidualPPOTrainer on real-model habits: dropout off, float32 weights from a bf16 checkpoint, and each
TRL PPOConfig option doing what it did in TRL (stop_token, missing_eos_penalty, kl_estimator,
num_sample_generations, ds3_gather_for_generation, value model from the reward model, num_train_epochs,
ratio logging/save steps, lr_scheduler_kwargs, optim, report_to, model_init_kwargs of the reward model)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from rpg_llm.ppo import trainer as ppo_trainer_module
from rpg_llm.ppo.trainer import ResidualPPOTrainer, kl_estimate
from rpg_llm.toy.tiny_llama import tiny_llama_config, word_tokenizer

from ..tiny_lm import SPECIAL_TOKENS, build_tiny_causal_lm
from .helpers import tiny_config

WORDS = [f"w{i}" for i in range(16)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny GPT-2 with dropout 0.1, a tiny Llama saved in bf16, a tiny Llama reward model (also in bf16)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForSequenceClassification

    root = tmp_path_factory.mktemp("trl_options")
    tokenizer = word_tokenizer(WORDS, SPECIAL_TOKENS)
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.1,
            embd_pdrop=0.1,
            attn_pdrop=0.1,
            summary_first_dropout=0.1,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    gpt2.save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    llama = build_tiny_causal_lm(root / "llama_fp32", num_words=len(WORDS))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(llama).to(torch.bfloat16).save_pretrained(root / "llama_bf16")
    tokenizer.save_pretrained(root / "llama_bf16")
    reward = LlamaForSequenceClassification(
        tiny_llama_config(tokenizer, hidden_size=16, num_layers=1, num_heads=2, max_positions=64, num_labels=1)
    )
    with torch.no_grad():
        reward.score.weight.normal_()
    reward.to(torch.bfloat16).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    return root


def _args(tmp_path, **overrides):
    one_step = dict(gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=1, max_steps=1, seed=3)
    return tiny_config(tmp_path, **{**one_step, **overrides})


def _prompts(n=8):
    return Dataset.from_dict({"prompt": [f"{WORDS[i % 16]} {WORDS[(3 * i + 1) % 16]}" for i in range(n)]})


def length_reward(prompts, completions, **kwargs):
    return [float(len(c.split())) for c in completions]


def _trainer(model_dir, args, **kwargs):
    kwargs.setdefault("train_dataset", _prompts())
    kwargs.setdefault("reward_funcs", [length_reward])
    return ResidualPPOTrainer(args, str(model_dir), **kwargs)


# ---------------------------------------------------------------- correctness on real models
def test_first_ratio_is_one_on_a_model_with_dropout(models, tmp_path):
    assert json.loads((models / "gpt2" / "config.json").read_text())["resid_pdrop"] == 0.1
    trainer = _trainer(models / "gpt2", _args(tmp_path))
    rollout = trainer._rollout(trainer._prompt_batch(0), 0)
    trainer.model.train()  # the update's mode: with dropout this forward would not be the sampling law
    with torch.no_grad():
        logits, values = trainer.model(rollout["input_ids"], rollout["attention_mask"], rollout["position_ids"], 4)
    new = torch.log_softmax(logits.float(), -1).gather(-1, rollout["completion_ids"].unsqueeze(-1)).squeeze(-1)
    mask = rollout["mask"]
    ratio = (new - rollout["old_logprobs"])[mask].exp()
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-5, rtol=0)
    torch.testing.assert_close(values[mask], rollout["old_values"][mask], atol=1e-6, rtol=0)
    for model in (trainer.policy, trainer.ref_model, trainer.accelerator.unwrap_model(trainer.model).critic):
        assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_bf16_checkpoint_trains_float32_weights(models, tmp_path):
    assert json.loads((models / "llama_bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    trainer = _trainer(models / "llama_bf16", _args(tmp_path, reward_model_path=str(models / "rm")), reward_funcs=None)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.float32}
    assert {p.dtype for p in trainer.reward_source.model.parameters()} == {torch.float32}
    # An explicit dtype still wins, for every model the trainer loads (the reward model too).
    explicit = _trainer(
        models / "llama_bf16",
        _args(tmp_path, reward_model_path=str(models / "rm"), model_init_kwargs={"dtype": "bfloat16"}),
        reward_funcs=None,
    )
    assert {p.dtype for p in explicit.policy.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in explicit.reward_source.model.parameters()} == {torch.bfloat16}


def test_model_init_kwargs_reach_the_reward_model(models, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    seen = {}
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def spy(cls, path, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(spy))
    init = {"revision": "main", "trust_remote_code": False, "attn_implementation": "eager"}
    _trainer(
        models / "llama_bf16",
        _args(tmp_path, reward_model_path=str(models / "rm"), model_init_kwargs=init),
        reward_funcs=None,
    )
    assert {k: seen[k] for k in init} == init and seen["dtype"] == torch.float32


def test_save_model_writes_a_loadable_policy_and_critic(models, tmp_path):
    from transformers import AutoModelForCausalLM

    from rpg_llm.ppo.critic import CausalLMCritic

    trainer = _trainer(models / "gpt2", _args(tmp_path, max_steps=1))
    trainer.train()
    trainer.save_model(tmp_path / "saved")
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    trained = trainer.policy.state_dict()
    for name, value in policy.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    assert policy.config.resid_pdrop == 0.0  # saved without dropout
    critic = CausalLMCritic.from_pretrained(tmp_path / "saved" / "critic")
    trained_critic = trainer.accelerator.unwrap_model(trainer.model).critic.state_dict()
    for name, value in critic.state_dict().items():
        torch.testing.assert_close(value, trained_critic[name], rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------- TRL's PPOConfig options
def test_stop_token_unset_samples_response_length_tokens_and_eos_stops(models, tmp_path):
    # The random tiny Llama emits EOS often; TRL's default (no stop token) keeps sampling past it.
    full = _trainer(models / "llama_fp32", _args(tmp_path, response_length=8))
    rollout = full._rollout(full._prompt_batch(0), 0)
    eos = full.tokenizer.eos_token_id
    assert full.stop_token_id is None and rollout["mask"].all()
    stopped = _trainer(models / "llama_fp32", _args(tmp_path, response_length=8, stop_token="eos"))
    assert stopped.stop_token_id == eos
    rollout = stopped._rollout(stopped._prompt_batch(0), 0)
    ids, mask = rollout["completion_ids"], rollout["mask"]
    assert (~mask).any(), "some completion should have stopped at EOS"
    for row, row_mask in zip(ids, mask):
        length = int(row_mask.sum())
        assert row_mask[:length].all() and not row_mask[length:].any()
        assert (row[: length - 1] != eos).all() and (length == 8 or row[length - 1] == eos)
    by_id = _trainer(models / "llama_fp32", _args(tmp_path, response_length=8, stop_token_id=eos))
    assert by_id.stop_token_id == eos


def test_missing_eos_penalty_is_subtracted_from_completions_without_eos(models, tmp_path):
    trainer = _trainer(
        models / "llama_fp32",
        _args(tmp_path, missing_eos_penalty=1.5),
        reward_funcs=[lambda prompts, completions, **kw: [10.0] * len(completions)],
    )
    eos, pad = trainer.tokenizer.eos_token_id, trainer.tokenizer.pad_token_id
    w = trainer.tokenizer.convert_tokens_to_ids(["w1", "w2"])
    ids = torch.tensor([[w[0], eos, pad], [w[0], w[1], w[0]], [w[1], w[1], eos]])
    mask = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])
    scores, _ = trainer._addon_scores({"prompt": ["w1"] * 3}, ids, mask)
    assert scores.tolist() == [10.0, 8.5, 10.0]


def test_kl_estimator_changes_the_logged_kl_only(models, tmp_path):
    policy_lp = torch.tensor([-1.0, -2.0, -0.5])
    ref_lp = torch.tensor([-1.5, -1.0, -0.5])
    torch.testing.assert_close(kl_estimate(policy_lp, ref_lp, "k1"), torch.tensor([0.5, -1.0, 0.0]))
    r = (ref_lp - policy_lp).exp()
    torch.testing.assert_close(kl_estimate(policy_lp, ref_lp, "k3"), (r - 1) - (ref_lp - policy_lp))
    stats = {}
    for estimator in ("k1", "k3"):
        trainer = _trainer(models / "llama_fp32", _args(tmp_path, kl_estimator=estimator))
        rollout = trainer._rollout(trainer._prompt_batch(0), 0)
        stats[estimator] = {k: v.item() for k, v in rollout["stats"].items()}
        # the logged KL is the estimator's, summed over each completion and averaged over the batch
        ref_logprobs = trainer._completion_logprobs(
            trainer.ref_model,
            rollout["input_ids"],
            rollout["attention_mask"],
            rollout["position_ids"],
            rollout["completion_ids"],
        )
        per_token = kl_estimate(rollout["old_logprobs"], ref_logprobs, estimator) * rollout["mask"]
        assert stats[estimator]["objective/kl_to_ref"] == pytest.approx(per_token.sum(-1).mean().item(), abs=1e-5)
    assert stats["k1"]["reward/total"] == stats["k3"]["reward/total"]  # the reward is exact either way
    assert stats["k1"]["objective/kl_to_ref"] != pytest.approx(stats["k3"]["objective/kl_to_ref"])


class Recorder(TrainerCallback):
    def __init__(self):
        self.events, self.logs = [], []

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append("train_begin")

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs)))

    def on_save(self, args, state, control, **kwargs):
        self.events.append(f"save@{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append("train_end")


def test_sample_generations_are_logged_as_a_table(models, tmp_path):
    recorder = Recorder()
    eval_prompts = Dataset.from_dict({"prompt": ["w1 w2", "w3", "w4 w5 w6"]})
    trainer = _trainer(
        models / "llama_fp32",
        _args(tmp_path, max_steps=4, num_sample_generations=2, per_device_eval_batch_size=2, logging_steps=100),
        eval_dataset=eval_prompts,
        callbacks=[recorder],
    )
    trainer.train()
    # TRL's schedule: every max(1, iterations // num_sample_generations) iterations, from the first.
    written = sorted(p.name for p in (tmp_path / "out" / "completions").iterdir())
    assert written == ["iteration-1.json", "iteration-3.json"]
    rows = json.loads((tmp_path / "out" / "completions" / "iteration-3.json").read_text())
    assert [row["prompt"] for row in rows] == ["w1 w2", "w3"]
    assert all(row["score"] == float(len(row["completion"].split())) for row in rows)
    tables = [(step, logs["completions"]) for step, logs in recorder.logs if "completions" in logs]
    assert [step for step, _ in tables] == [1, 3] and tables[0][1].startswith("| prompt | completion | score |")


def test_ds3_gather_for_generation_reaches_unwrap_model_for_generation(models, tmp_path, monkeypatch):
    seen = []
    original = ppo_trainer_module.unwrap_model_for_generation

    def spy(*args, **kwargs):
        seen.append(kwargs["gather_deepspeed3_params"])
        return original(*args, **kwargs)

    monkeypatch.setattr(ppo_trainer_module, "unwrap_model_for_generation", spy)
    for flag in (True, False):
        trainer = _trainer(models / "llama_fp32", _args(tmp_path, ds3_gather_for_generation=flag))
        trainer._rollout(trainer._prompt_batch(0), 0)
    assert seen == [True, False]


def test_value_model_initialized_from_the_reward_model(models, tmp_path):
    from transformers import AutoModelForSequenceClassification

    trainer = _trainer(
        models / "llama_bf16",
        _args(tmp_path, reward_model_path=str(models / "rm"), value_model_path=str(models / "rm")),
        reward_funcs=None,
    )
    critic = trainer.accelerator.unwrap_model(trainer.model).critic
    reward_model = AutoModelForSequenceClassification.from_pretrained(models / "rm", dtype=torch.float32).eval()
    torch.testing.assert_close(critic.value_head.weight, reward_model.score.weight, rtol=0, atol=0)
    ids = trainer.tokenizer(["w1 w2 w3", "w4 w5 w6"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        values = critic(ids)
        scores = reward_model(input_ids=ids).logits[:, 0]
    torch.testing.assert_close(values[:, -1], scores, atol=1e-5, rtol=0)  # V starts as r_R at the last token


def test_num_train_epochs_sets_the_total_episodes(models, tmp_path):
    # 8 prompts, 4 per rollout: TRL's total_episodes = num_train_epochs × 8 when neither it nor max_steps is given.
    for epochs, iterations in ((1, 2), (2.5, 5), (3, 6)):
        trainer = _trainer(models / "llama_fp32", _args(tmp_path, max_steps=-1, num_train_epochs=epochs))
        assert trainer.num_iterations == iterations
    assert _trainer(models / "llama_fp32", _args(tmp_path, max_steps=-1, total_episodes=12)).num_iterations == 3


def test_ratio_logging_and_save_steps(models, tmp_path):
    recorder = Recorder()
    trainer = _trainer(
        models / "llama_fp32",
        _args(tmp_path, max_steps=4, logging_steps=0.5, save_strategy="steps", save_steps=0.25),
        callbacks=[recorder],
    )
    trainer.train()
    assert [step for step, _ in recorder.logs] == [2, 4]  # ceil(0.5 × 4 iterations) = every 2
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == [f"checkpoint-{i}" for i in (1, 2, 3, 4)]
    assert recorder.events == ["train_begin", "save@1", "save@2", "save@3", "save@4", "train_end"]


def test_lr_scheduler_kwargs_and_optim_are_honoured(models, tmp_path):
    args = _args(
        tmp_path,
        max_steps=3,
        num_mini_batches=2,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        optim="sgd",
        weight_decay=0.5,
    )
    trainer = _trainer(models / "llama_fp32", args)
    assert isinstance(trainer.optimizer.optimizer, torch.optim.SGD)
    decays = {group["weight_decay"] for group in trainer.optimizer.param_groups}
    assert decays == {0.5, 0.0}  # Trainer's rule: no decay on biases and norms
    trainer.train()
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.1 * 1e-2)  # cosine down to min_lr_rate × lr
    for row, steps in zip(trainer.log_history, (2, 4, 6)):  # 2 optimizer steps per iteration, 6 in all
        assert row["lr"] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * steps / 6))))


def test_report_to_tensorboard_and_user_callbacks(models, tmp_path):
    recorder = Recorder()
    trainer = _trainer(
        models / "llama_fp32",
        _args(tmp_path, max_steps=2, logging_steps=1, report_to=["tensorboard"]),
        callbacks=[recorder],
    )
    trainer.train()
    events = list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert events, "TensorBoardCallback wrote no event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    rewards = [event.value for event in accumulator.Scalars("train/reward/addon")]
    assert rewards == pytest.approx([row["reward/addon"] for row in trainer.log_history])
    assert recorder.events == ["train_begin", "train_end"] and [s for s, _ in recorder.logs] == [1, 2]


def test_a_callback_can_stop_training(models, tmp_path):
    class StopAfterOne(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = True
            return control

    trainer = _trainer(models / "llama_fp32", _args(tmp_path, max_steps=5), callbacks=[StopAfterOne()])
    assert len(trainer.train()) == 1
