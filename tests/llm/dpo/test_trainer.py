"""DecoupledDPOTrainer against TRL's DPOTrainer and against the closed forms of eq. 24/25.

Every model here is a tiny Llama built and saved locally, loaded with ``from_pretrained``. Reference
values are recomputed independently: a plain forward (full logits → log_softmax), not TRL's fused head.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from rpg_llm.dpo.config import TRL_LOSS_TYPES, DecoupledDPOConfig
from rpg_llm.dpo.trainer import PREFERENCE_LABEL_KEY, DecoupledDPOTrainer
from rpg_llm.precision import bf16_supported_on_device

from ..tiny_lm import build_tiny_causal_lm, random_preference_dataset

BATCH = 6


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lm")
    return build_tiny_causal_lm(root / "policy", seed=0), build_tiny_causal_lm(root / "reference", seed=1)


@pytest.fixture(scope="module")
def dataset():
    return random_preference_dataset(BATCH, seed=3, with_labels=True)


def common_args(tmp_path, **overrides):
    args = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        report_to="none",
        gradient_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        max_steps=2,
        learning_rate=1e-2,
        seed=0,
        use_cpu=True,  # exact float32 comparisons; bf16 then follows the device: off
    )
    args.update(overrides)
    return args


def make_trainer(model_dir, dataset, tmp_path, ref_dir=None, trl=False, peft_config=None, **config):
    ref_model = AutoModelForCausalLM.from_pretrained(ref_dir) if ref_dir is not None else None
    if trl:
        args = DPOConfig(bf16=bf16_supported_on_device(use_cpu=True), **common_args(tmp_path, **config))
        trainer_class = DPOTrainer
    else:
        args = DecoupledDPOConfig(**common_args(tmp_path, **config))
        trainer_class = DecoupledDPOTrainer
    return trainer_class(
        str(model_dir),
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=peft_config,
    )


def first_batch(trainer):
    return trainer.data_collator([trainer.train_dataset[index] for index in range(BATCH)])


def loss_on(trainer, batch):
    trainer.model.train()
    return trainer.compute_loss(trainer.model, dict(batch))


@torch.no_grad()
def independent_logps(model, batch):
    """Sequence log-probs over completion tokens from a plain forward: (chosen, rejected)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return (token_logps * batch["completion_mask"][:, 1:]).sum(1).chunk(2)


def test_decoupled_with_equal_coefficients_is_trl_sigmoid(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    beta = 0.3
    ours = make_trainer(
        policy_dir, dataset, tmp_path, ref_dir, loss_type=["decoupled"], beta=beta, alpha_hat=beta, omega_prime=beta
    )
    theirs = make_trainer(policy_dir, dataset, tmp_path, ref_dir, trl=True, loss_type=["sigmoid"], beta=beta)
    batch = first_batch(ours)
    our_loss, their_loss = (
        loss_on(ours, batch),
        loss_on(theirs, {k: v for k, v in batch.items() if k != PREFERENCE_LABEL_KEY}),
    )
    assert abs(their_loss.item() - math.log(2)) > 1e-3  # the reference model differs: a non-trivial batch
    torch.testing.assert_close(our_loss, their_loss, rtol=1e-6, atol=1e-6)
    our_loss.backward()
    their_loss.backward()
    for (name, ours_p), (_, theirs_p) in zip(ours.model.named_parameters(), theirs.model.named_parameters()):
        torch.testing.assert_close(ours_p.grad, theirs_p.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("alpha_hat,omega_prime", [(0.3, 0.1), (0.1, 0.3), (0.2, 0.0)])
def test_decoupled_loss_is_eq25(model_dirs, dataset, tmp_path, alpha_hat, omega_prime):
    policy_dir, ref_dir = model_dirs
    trainer = make_trainer(
        policy_dir, dataset, tmp_path, ref_dir, loss_type=["decoupled"], alpha_hat=alpha_hat, omega_prime=omega_prime
    )
    batch = first_batch(trainer)
    policy_w, policy_l = independent_logps(trainer.model, batch)
    ref_w, ref_l = independent_logps(trainer.ref_model, batch)
    expected = -F.logsigmoid(alpha_hat * (policy_w - policy_l) - omega_prime * (ref_w - ref_l)).mean()
    torch.testing.assert_close(loss_on(trainer, batch), expected, rtol=1e-5, atol=1e-6)


def test_decoupled_loss_moves_the_way_eq25_says(model_dirs, dataset, tmp_path):
    # Policy = reference (TRL's default copy), so each margin is (α̂ − ω')·d with d = log π(yw)/π(yl):
    # α̂ > ω' rewards pairs the prior already prefers (loss < log 2), α̂ < ω' penalises them.
    policy_dir, _ = model_dirs
    probe = make_trainer(policy_dir, dataset, tmp_path, loss_type=["decoupled"])
    chosen, rejected = independent_logps(probe.model, first_batch(probe))
    prior_prefers_chosen = [index for index in range(BATCH) if chosen[index] > rejected[index] + 1e-3]
    assert prior_prefers_chosen, "fixture should contain pairs whose chosen side the prior prefers"
    subset = dataset.select(prior_prefers_chosen)

    def loss(alpha_hat, omega_prime):
        trainer = make_trainer(
            policy_dir,
            subset,
            tmp_path,
            loss_type=["decoupled"],
            alpha_hat=alpha_hat,
            omega_prime=omega_prime,
            per_device_train_batch_size=len(subset),
        )
        batch = trainer.data_collator([trainer.train_dataset[index] for index in range(len(subset))])
        return loss_on(trainer, batch).item()

    assert loss(0.3, 0.1) < math.log(2) - 1e-4 < math.log(2) + 1e-4 < loss(0.1, 0.3)
    assert loss(0.2, 0.2) == pytest.approx(math.log(2), abs=1e-6)


def test_ce_loss_is_eq24_with_dataset_labels(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    beta = 0.4
    trainer = make_trainer(policy_dir, dataset, tmp_path, ref_dir, loss_type=["ce"], beta=beta)
    batch = first_batch(trainer)
    labels = torch.tensor(dataset["label"], dtype=torch.float32)
    torch.testing.assert_close(batch[PREFERENCE_LABEL_KEY], labels)
    policy_w, policy_l = independent_logps(trainer.model, batch)
    ref_w, ref_l = independent_logps(trainer.ref_model, batch)
    chosen_reward, rejected_reward = beta * (policy_w - ref_w), beta * (policy_l - ref_l)
    expected = -(
        labels * torch.log(torch.sigmoid(chosen_reward)) + (1 - labels) * torch.log(1 - torch.sigmoid(rejected_reward))
    ).mean()
    torch.testing.assert_close(loss_on(trainer, batch), expected, rtol=1e-5, atol=1e-6)


def test_ce_label_defaults_to_one(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    unlabelled = dataset.remove_columns("label")
    trainer = make_trainer(policy_dir, unlabelled, tmp_path, ref_dir, loss_type=["ce"], beta=0.4)
    batch = first_batch(trainer)
    assert PREFERENCE_LABEL_KEY not in batch
    policy_w, _ = independent_logps(trainer.model, batch)
    ref_w, _ = independent_logps(trainer.ref_model, batch)
    torch.testing.assert_close(
        loss_on(trainer, batch), -F.logsigmoid(0.4 * (policy_w - ref_w)).mean(), rtol=1e-5, atol=1e-6
    )


def test_loss_types_mix_with_trl_losses_by_weight(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    coefficients = dict(beta=0.3, alpha_hat=0.5, omega_prime=0.2)
    mixed = make_trainer(
        policy_dir,
        dataset,
        tmp_path,
        ref_dir,
        loss_type=["sigmoid", "decoupled", "ce"],
        loss_weights=[0.2, 0.5, 0.3],
        **coefficients,
    )
    batch = first_batch(mixed)
    parts = [
        loss_on(make_trainer(policy_dir, dataset, tmp_path, ref_dir, loss_type=[name], **coefficients), batch)
        for name in ("sigmoid", "decoupled", "ce")
    ]
    expected = 0.2 * parts[0] + 0.5 * parts[1] + 0.3 * parts[2]
    torch.testing.assert_close(loss_on(mixed, batch), expected, rtol=1e-6, atol=1e-6)
    assert mixed.loss_types == ["sigmoid"] and mixed.rpg_losses == [("decoupled", 0.5), ("ce", 0.3)]


def test_lora_reference_is_the_base_model_with_adapters_disabled(model_dirs, dataset, tmp_path):
    policy_dir, _ = model_dirs
    alpha_hat, omega_prime = 0.3, 0.1
    trainer = make_trainer(
        policy_dir,
        dataset,
        tmp_path,
        loss_type=["decoupled"],
        alpha_hat=alpha_hat,
        omega_prime=omega_prime,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        learning_rate=5e-2,
        max_steps=3,
    )
    assert trainer.ref_model is None
    trainer.train()
    lora_delta = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_delta and any(p.abs().max() > 0 for p in lora_delta)  # the adapters trained
    batch = first_batch(trainer)
    policy_w, policy_l = independent_logps(trainer.model, batch)
    with trainer.model.disable_adapter():
        ref_w, ref_l = independent_logps(trainer.model, batch)
    base = AutoModelForCausalLM.from_pretrained(policy_dir)
    torch.testing.assert_close(torch.stack(independent_logps(base, batch)), torch.stack((ref_w, ref_l)))
    assert not torch.allclose(policy_w, ref_w)
    expected = -F.logsigmoid(alpha_hat * (policy_w - policy_l) - omega_prime * (ref_w - ref_l)).mean()
    torch.testing.assert_close(loss_on(trainer, batch), expected, rtol=1e-5, atol=1e-6)


def test_precomputed_reference_log_probs_give_the_same_loss(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    config = dict(loss_type=["decoupled", "ce"], alpha_hat=0.4, omega_prime=0.1)
    live = make_trainer(policy_dir, dataset, tmp_path, ref_dir, **config)
    precomputed = make_trainer(policy_dir, dataset, tmp_path, ref_dir, precompute_ref_log_probs=True, **config)
    batch = first_batch(precomputed)
    assert {"ref_chosen_logps", "ref_rejected_logps", PREFERENCE_LABEL_KEY} <= set(batch)
    live_batch = {k: v for k, v in batch.items() if not k.startswith("ref_")}
    torch.testing.assert_close(loss_on(precomputed, batch), loss_on(live, live_batch), rtol=1e-5, atol=1e-6)
    precomputed.train()
    assert precomputed.state.global_step == 2


def test_label_column_survives_the_training_dataloader(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    trainer = make_trainer(policy_dir, dataset, tmp_path, ref_dir, loss_type=["ce"])
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch[PREFERENCE_LABEL_KEY].tolist()) == pytest.approx(sorted(dataset["label"]))


def test_bf16_follows_the_device(tmp_path):
    config = DecoupledDPOConfig(output_dir=str(tmp_path), report_to="none")
    assert config.bf16 is bf16_supported_on_device()
    if not torch.cuda.is_available():
        assert config.bf16 is False
    assert DecoupledDPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True).bf16 is False


@pytest.mark.parametrize(
    "config,match",
    [
        (dict(alpha_hat=0.0), "alpha_hat must be a finite number > 0"),
        (dict(alpha_hat=-1.0), "alpha_hat must be a finite number > 0"),
        (dict(omega_prime=-0.1), "omega_prime must be a finite number >= 0"),
        (dict(loss_type=["decoupled"], ld_alpha=0.5), "ld_alpha is not supported"),
        (
            dict(loss_type=["sigmoid", "decopled"]),
            r"unknown loss_type \['decopled'\]; choose from \['decoupled', 'ce', 'sigmoid'",
        ),
    ],
)
def test_bad_coefficients_fail_in_one_line(tmp_path, config, match):
    with pytest.raises(ValueError, match=match) as error:
        DecoupledDPOConfig(output_dir=str(tmp_path), report_to="none", **config)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda ds: ds.remove_columns("rejected"), r"lacks column\(s\) \['rejected'\]"),
        (lambda ds: ds.remove_columns(["chosen", "rejected"]), r"lacks column\(s\) \['chosen', 'rejected'\]"),
        (
            lambda ds: ds.map(lambda row, i: {"label": 1.5 if i == 2 else row["label"]}, with_indices=True),
            r"column 'label' must lie in \[0, 1\]; 1 value\(s\) do not, e.g. 1.5",
        ),
        (lambda ds: ds.map(lambda row: {"label": -0.5}), r"must lie in \[0, 1\]; 6 value\(s\)"),
    ],
)
def test_bad_datasets_fail_in_one_line_before_any_model_loads(dataset, tmp_path, edit, match):
    args = DecoupledDPOConfig(**common_args(tmp_path, loss_type=["ce"]))
    with pytest.raises(ValueError, match=match) as error:
        # A model path that does not exist: the error must come before anything tries to load it.
        DecoupledDPOTrainer(str(tmp_path / "no-model-here"), args=args, train_dataset=edit(dataset))
    assert "\n" not in str(error.value)


def test_evaluate_logs_the_rpg_losses(model_dirs, dataset, tmp_path):
    policy_dir, ref_dir = model_dirs
    ref_model = AutoModelForCausalLM.from_pretrained(ref_dir)
    args = DecoupledDPOConfig(**common_args(tmp_path, loss_type=["decoupled", "ce"], per_device_eval_batch_size=BATCH))
    trainer = DecoupledDPOTrainer(
        str(policy_dir),
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(policy_dir),
    )
    metrics = trainer.evaluate()
    assert {"eval_decoupled/rewards/accuracies", "eval_ce/loss"} <= set(metrics)
    # One eval batch = the whole dataset: the logged loss is the sum of the two terms on it.
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_decoupled/loss"] + metrics["eval_ce/loss"], rel=1e-5)


def test_trl_loss_types_are_read_from_the_installed_trl():
    assert {"sigmoid", "hinge", "ipo"} <= set(TRL_LOSS_TYPES)
