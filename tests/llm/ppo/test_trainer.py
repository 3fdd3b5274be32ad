"""ResidualPPOTrainer: sampling log-probs, LoRA reference, checkpoint resume, reward sources, bad input."""

import copy

import pytest
import torch
from datasets import Dataset

from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.sampling import position_ids_from_mask, sample_completions
from rpg_llm.ppo.trainer import ResidualPPOTrainer

from .helpers import tiny_config, toy_trainer


@pytest.fixture(scope="module")
def world(toy_world):
    # A random (undistilled) tiny Llama + its tokenizer, saved and loaded through from_pretrained.
    return toy_world(
        vocab_size=6, completion_length=4, num_prompts=3, distill_steps=0, hidden_size=32, num_heads=2, seed=5
    )


def _args(tmp_path, **overrides):
    return tiny_config(tmp_path, **overrides)


def _trainer(world, args, **kwargs):
    return toy_trainer(world, args, **kwargs)


def test_sampled_logprobs_equal_the_training_forward(world):
    model = world.load_prior_model().eval()
    tok = world.tokenizer
    prompts = ["red", "blue green red", "green blue", "red red red red"]  # different lengths -> left padding
    enc = tok(prompts * 4, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()
    g = torch.Generator().manual_seed(0)
    out = sample_completions(model, enc["input_ids"], enc["attention_mask"], 6, tok.eos_token_id, tok.pad_token_id, g)
    assert (~out.completion_mask).any(), "a random model should stop early on some rows (EOS)"
    ids = torch.cat([enc["input_ids"], out.completion_ids], 1)
    mask = torch.cat([enc["attention_mask"], out.completion_mask.long()], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -7:-1]
    logprobs = torch.log_softmax(logits.float(), -1).gather(-1, out.completion_ids.unsqueeze(-1)).squeeze(-1)
    m = out.completion_mask
    torch.testing.assert_close(out.logprobs[m], logprobs[m], atol=1e-5, rtol=0)
    assert torch.all(out.logprobs[~m] == 0)


def test_first_ppo_ratio_is_exactly_one(world, tmp_path):
    # Old log-probs are the sampling log-probs; before any step the training forward must reproduce them.
    trainer = _trainer(world, _args(tmp_path, max_steps=1))
    rollout = trainer._rollout(trainer._prompt_batch(0), 0)
    with torch.no_grad():
        logits, values = trainer.model(rollout["input_ids"], rollout["attention_mask"], rollout["position_ids"], 4)
    new = torch.log_softmax(logits.float(), -1).gather(-1, rollout["completion_ids"].unsqueeze(-1)).squeeze(-1)
    m = rollout["mask"]
    torch.testing.assert_close(new[m], rollout["old_logprobs"][m], atol=1e-5, rtol=0)
    torch.testing.assert_close(values[m], rollout["old_values"][m])


def test_suppressed_tokens_are_never_sampled_and_every_log_prob_is_of_the_renormalized_law(world, tmp_path):
    # One support: with <pad>/<eos> suppressed, rollouts are L content words, and the sampler's, the training
    # forward's and the reference's log-probs are all of the law renormalized over the rest (kl_to_ref = 0 at start).
    special = [world.pad_token_id, world.eos_token_id]
    trainer = _trainer(world, _args(tmp_path, max_steps=1, suppress_token_ids=special))
    rollout = trainer._rollout(trainer._prompt_batch(0), 0)
    assert rollout["mask"].all() and not torch.isin(rollout["completion_ids"], torch.tensor(special)).any()
    with torch.no_grad():
        logits, _ = trainer.model(rollout["input_ids"], rollout["attention_mask"], rollout["position_ids"], 4)
    content = logits.float().clone()
    content[..., special] = float("-inf")
    renormalized = torch.log_softmax(content, -1).gather(-1, rollout["completion_ids"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(rollout["old_logprobs"], renormalized, atol=1e-5, rtol=0)
    assert abs(float(rollout["stats"]["objective/kl_to_ref"])) < 1e-5


def test_lora_reference_is_the_base_model_with_adapters_off(world, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = _trainer(world, _args(tmp_path, max_steps=2), peft_config=lora)
    trainer.train()
    policy = trainer.policy
    device = next(policy.parameters()).device  # the trainer placed it (cuda where there is one)
    base = world.load_prior_model().eval().to(device)
    ids = world.tokenizer(world.prompts, return_tensors="pt")["input_ids"].to(device)
    reference_model, reference_context = trainer._reference()  # what the rollout scores log π_ref with
    with torch.no_grad():
        with reference_context():
            reference = reference_model(input_ids=ids).logits
        adapted = policy(input_ids=ids).logits
        expected = base(input_ids=ids).logits
    torch.testing.assert_close(reference, expected, atol=1e-6, rtol=0)
    assert (adapted - expected).abs().max() > 1e-4, "LoRA training should have moved the policy"
    assert trainer.ref_model is None  # no second copy of the model


def test_checkpoint_resumes_to_the_same_weights(world, tmp_path):
    straight = _trainer(world, _args(tmp_path / "a", max_steps=3, save_strategy="steps", save_steps=2))
    straight.train()
    assert (tmp_path / "a" / "out" / "checkpoint-2" / "trainer_state.json").exists()
    resumed = _trainer(world, _args(tmp_path / "b", max_steps=3, save_strategy="no"))
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "out" / "checkpoint-2"))
    assert resumed.iteration == 3 and len(resumed.log_history) == 3
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert resumed.log_history[-1]["reward/addon"] == pytest.approx(straight.log_history[-1]["reward/addon"])


def test_metrics_report_each_reward_component(world, tmp_path):
    trainer = _trainer(world, _args(tmp_path, max_steps=1))
    (stats,) = trainer.train()
    for key in (
        "reward/addon",
        "reward/omega_prime_logp_ref",
        "reward/alpha_hat_logp_policy",
        "objective/kl_to_ref",
        "objective/entropy",
        "loss/value",
        "policy/clipfrac",
    ):
        assert key in stats
    # Σ_t r_t = r_R + ω'·Σ log π_ref − α̂·Σ log πθ
    expected = stats["reward/addon"] + stats["reward/omega_prime_logp_ref"] - stats["reward/alpha_hat_logp_policy"]
    assert stats["reward/total"] == pytest.approx(expected, abs=1e-5)


def test_reward_model_source(world, tmp_path):
    from transformers import LlamaForSequenceClassification

    from rpg_llm.toy.tiny_llama import tiny_llama_config

    config = tiny_llama_config(
        world.tokenizer, hidden_size=16, num_layers=1, num_heads=2, max_positions=32, num_labels=1
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    world.tokenizer.save_pretrained(tmp_path / "rm")
    trainer = _trainer(world, _args(tmp_path, max_steps=1, reward_model_path=str(tmp_path / "rm")), reward_funcs=None)
    (stats,) = trainer.train()
    assert "reward/addon/reward_model" in stats and torch.isfinite(torch.tensor(stats["reward/addon"]))


@pytest.mark.parametrize(
    "case,match",
    [
        ("unknown_model", "model_name_or_path"),
        ("unknown_hub_model", "model_name_or_path"),
        ("no_prompt_column", "'prompt' column"),
        ("no_pad_token", "no pad token"),
    ],
)
def test_bad_input_fails_in_one_line_before_training(world, tmp_path, case, match):
    args = _args(tmp_path)
    kwargs = dict(
        train_dataset=world.prompt_dataset(), reward_funcs=world.reward_functions(), processing_class=world.tokenizer
    )
    model = str(world.prior_model_dir)
    if case == "unknown_model":
        model = str(tmp_path / "no-such-model")
    elif case == "unknown_hub_model":
        model = "no-such-org-rpg/no-such-model"  # offline in tests: the hub lookup fails fast
    elif case == "no_prompt_column":
        kwargs["train_dataset"] = Dataset.from_dict({"text": world.prompts})
    elif case == "no_pad_token":
        tokenizer = copy.deepcopy(world.tokenizer)
        tokenizer.pad_token = None
        kwargs["processing_class"] = tokenizer
    with pytest.raises(ValueError, match=match) as error:
        ResidualPPOTrainer(args, model, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(omega_prime=-0.1), "omega_prime"),
        (dict(alpha_hat=-1.0), "alpha_hat"),
        (dict(kl_coef=-0.5), "omega_prime"),
        (dict(response_length=0), "response_length"),
        (dict(temperature=0.7), "temperature"),
        (dict(suppress_token_ids=[1, -1]), "suppress_token_ids"),
    ],
)
def test_bad_config_fails_in_one_line(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match) as error:
        _args(tmp_path, **overrides)
    assert "\n" not in str(error.value)


def test_cli_reports_bad_input_in_one_line(world, tmp_path, capsys):
    from rpg_llm.ppo.cli import main

    data = tmp_path / "prompts.jsonl"
    data.write_text('{"text": "red blue"}\n')
    code = main(
        [
            "--model_name_or_path",
            str(world.prior_model_dir),
            "--dataset_name",
            str(data),
            "--reward_funcs",
            "math:fabs",
            "--output_dir",
            str(tmp_path / "o"),
            "--report_to",
            "none",
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("rpg ppo: error:") and "'prompt' column" in errors[0]
    assert main(["--response_length", "0", "--output_dir", str(tmp_path / "o")]) == 2
    assert "response_length" in capsys.readouterr().err


def test_conversational_prompts_go_through_the_chat_template(world, tmp_path):
    tokenizer = copy.deepcopy(world.tokenizer)
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }} {% endfor %}"
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in world.prompts]})
    seen = {}

    def reward(prompts, completions, completion_ids, **kwargs):
        seen.update(prompts=prompts, completions=completions, completion_ids=completion_ids)
        return [float(len(ids)) for ids in completion_ids]

    trainer = ResidualPPOTrainer(
        _args(tmp_path, max_steps=1),
        str(world.prior_model_dir),
        processing_class=tokenizer,
        train_dataset=dataset,
        reward_funcs=[reward],
    )
    assert trainer.train_dataset["prompt_input_ids"] == [world.tokenizer(p)["input_ids"] for p in world.prompts]
    (stats,) = trainer.train()
    assert isinstance(seen["prompts"][0], list) and seen["prompts"][0][0]["role"] == "user"
    assert seen["completions"][0][0]["role"] == "assistant"
    assert stats["reward/addon"] == pytest.approx(stats["completion_length"])


def test_gradient_checkpointing_gives_the_same_update(world, tmp_path):
    plain = _trainer(world, _args(tmp_path / "a", max_steps=1))
    plain.train()
    # transformers renamed gradient_checkpointing to activation_checkpointing (5.2x); the trainer reads either
    flag = (
        "activation_checkpointing"
        if "activation_checkpointing" in ResidualPPOConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )
    checkpointed = _trainer(world, _args(tmp_path / "b", max_steps=1, **{flag: True}))
    assert checkpointed.model.is_gradient_checkpointing
    checkpointed.train()
    assert checkpointed.model.is_gradient_checkpointing  # restored after sampling
    for (name, a), (_, b) in zip(plain.model.named_parameters(), checkpointed.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)
