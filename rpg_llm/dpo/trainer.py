"""Decoupled DPO and the implicit-reward cross-entropy loss on TRL's ``DPOTrainer`` (paper App. B).

TRL computes every per-sequence log-probability inside ``DPOTrainer._compute_loss`` and mixes its own
loss types there. Rather than copy that method, this trainer overrides only the public
``compute_loss``: TRL runs its forward passes and its own loss types as usual while forward hooks
on the policy (and the reference model, if there is one) keep the per-token log-probs TRL asked the
models for; the ``decoupled`` / ``ce`` terms are then computed from the very same tensors with
:mod:`rpg.preference` and added with their ``loss_weights``. Nothing is recomputed, so LoRA
(reference = adapters disabled), precomputed reference log-probs and ``accelerate launch`` on any
number of processes behave exactly as in TRL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import trl
from datasets import Dataset, IterableDataset
from trl import DPOTrainer

from rpg.preference import decoupled_dpo_loss, implicit_reward_cross_entropy_loss
from rpg_llm.dpo.config import RPG_LOSS_TYPES, DecoupledDPOConfig

__all__ = ["DecoupledDPOTrainer", "PreferenceLabelCollator", "validate_preference_dataset", "PREFERENCE_LABEL_KEY"]

# Batch key of the per-pair CE label; TRL forwards every unknown batch key to the model, so it is
# popped before TRL sees the batch.
PREFERENCE_LABEL_KEY = "preference_label"


def validate_preference_dataset(dataset: Any, split: str = "train_dataset", label_column: str | None = "label") -> None:
    """Raise one clear ``ValueError`` for a dataset the preference losses cannot use.

    Needs ``chosen`` and ``rejected`` (``prompt`` is optional: TRL extracts a shared prefix); the label
    column of the ``ce`` loss (``label_column``; None when no ``ce`` loss reads it), if present, must hold
    numbers in [0, 1]. Checked on the whole column for map-style
    datasets, on the first example for streaming ones (the loss re-checks every batch).
    """
    if dataset is None:
        raise ValueError(f"{split} is required")
    if isinstance(dataset, dict):  # eval_dataset may be a dict of splits
        for name, split_dataset in dataset.items():
            validate_preference_dataset(split_dataset, f"{split}[{name!r}]", label_column)
        return
    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise ValueError(f"{split} must be a datasets.Dataset or IterableDataset, got {type(dataset).__name__}")
    columns = dataset.column_names or list(next(iter(dataset)).keys())
    missing = [name for name in ("chosen", "rejected") if name not in columns]
    if missing:
        raise ValueError(
            f"{split} lacks column(s) {missing} (has {sorted(columns)}); a preference dataset needs 'chosen' and "
            "'rejected' (and optionally 'prompt' and a per-pair label column)"
        )
    if label_column is None or label_column not in columns:
        return
    if isinstance(dataset, Dataset):
        labels = torch.as_tensor(dataset.with_format("numpy")[label_column], dtype=torch.float64)
    else:
        labels = torch.as_tensor([float(next(iter(dataset))[label_column])], dtype=torch.float64)
    bad = ~((labels >= 0) & (labels <= 1))  # also catches NaN
    if bool(bad.any()):
        raise ValueError(
            f"{split} column {label_column!r} must lie in [0, 1]; {int(bad.sum())} value(s) do not, e.g. "
            f"{labels[bad][0].item()!r}"
        )


class PreferenceLabelCollator:
    """Wraps a preference collator and adds the per-pair label column as ``PREFERENCE_LABEL_KEY``."""

    def __init__(self, collator, label_column: str = "label"):
        self.collator = collator
        self.label_column = label_column

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        if examples and self.label_column in examples[0]:
            batch[PREFERENCE_LABEL_KEY] = torch.tensor([float(example[self.label_column]) for example in examples])
        return batch


@contextlib.contextmanager
def _capture_fused_log_probs(modules: list[torch.nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """Record ``outputs.log_probs`` of every fused-LM-head forward of each module, in call order."""
    captured: list[list[torch.Tensor]] = [[] for _ in modules]
    handles = []
    for index, module in enumerate(modules):

        def hook(_module, _args, kwargs, output, index=index):
            if kwargs.get("fused_lm_head"):  # skip the logits recompute TRL does for compute_metrics
                captured[index].append(output.log_probs)

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class DecoupledDPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with two more loss types, ``decoupled`` (eq. 25) and ``ce`` (eq. 24).

    Use them alone (``loss_type=["decoupled"]``) or mixed with TRL's (``loss_type=["sigmoid", "ce"]``,
    ``loss_weights=[1.0, 0.5]``); each term is the batch mean of its per-pair loss times its weight,
    as in TRL. The constructor takes the same arguments as ``DPOTrainer`` and checks the datasets
    (columns, labels in [0, 1]) before any model is loaded.
    """

    _tag_names = ["trl", "dpo", "rpg"]
    _name = "Decoupled DPO"

    def __init__(
        self,
        model,
        ref_model=None,
        args: DecoupledDPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        *positional,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = DecoupledDPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-decoupled-DPO")
        elif not isinstance(args, DecoupledDPOConfig):
            raise ValueError(f"args must be a DecoupledDPOConfig, got {type(args).__name__}")
        label_column = args.label_column if "ce" in args.loss_type else None  # only `ce` reads the label
        validate_preference_dataset(train_dataset, "train_dataset", label_column)
        if eval_dataset is not None:
            validate_preference_dataset(eval_dataset, "eval_dataset", label_column)
        super().__init__(model, ref_model, args, data_collator, train_dataset, eval_dataset, *positional, **kwargs)

        # TRL's loop keeps TRL's loss types; ours are added in `compute_loss`.
        pairs = list(zip(self.loss_types, self.loss_weights, strict=True))
        self.rpg_losses = [(name, weight) for name, weight in pairs if name in RPG_LOSS_TYPES]
        self.loss_types = [name for name, _ in pairs if name not in RPG_LOSS_TYPES]
        self.loss_weights = [weight for name, weight in pairs if name not in RPG_LOSS_TYPES]
        if label_column is not None:
            self.data_collator = PreferenceLabelCollator(self.data_collator, label_column)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # TRL always appends EOS to completions; `completion_eos=False` takes it back off after tokenization.
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if args.completion_eos:
            return dataset
        eos = self._tokenizer.eos_token_id

        def strip_eos(example):
            return {
                key: example[key][:-1] if example[key][-1:] == [eos] else example[key]
                for key in ("chosen_ids", "rejected_ids")
            }

        return dataset.map(strip_eos)

    def _set_signature_columns_if_needed(self):
        # Keep the label column through `remove_unused_columns`.
        super()._set_signature_columns_if_needed()
        if "ce" in self.args.loss_type and self.args.label_column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, self.args.label_column]

    def compute_ref_log_probs(self, model, inputs):
        inputs = {key: value for key, value in inputs.items() if key != PREFERENCE_LABEL_KEY}
        return super().compute_ref_log_probs(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop(PREFERENCE_LABEL_KEY, None)
        if not self.rpg_losses:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        policy = self.accelerator.unwrap_model(model)
        reference = None
        if self.ref_model is not None and not self.precompute_ref_logps:
            reference = self.accelerator.unwrap_model(self.ref_model)
        with _capture_fused_log_probs([policy] if reference is None else [policy, reference]) as captured:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = result if return_outputs else (result, None)

        # Sequence log-probs exactly as TRL sums them: over completion tokens, batch = [chosen; rejected].
        shift_completion_mask = inputs["completion_mask"][..., 1:]
        seq_len = shift_completion_mask.size(1)

        def sequence_logps(per_token_logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (per_token_logps[:, -seq_len:] * shift_completion_mask).sum(dim=1).chunk(2, dim=0)

        if not captured[0] or (reference is None and not self.precompute_ref_logps and len(captured[0]) < 2):
            raise RuntimeError(
                "DecoupledDPOTrainer saw no fused-LM-head forward of the policy (or of the reference): "
                f"this TRL version ({trl.__version__}) computes DPO log-probs differently than the one this "
                "was built on"
            )
        policy_chosen, policy_rejected = sequence_logps(captured[0][0])
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        elif reference is not None:
            ref_chosen, ref_rejected = sequence_logps(captured[1][0])
        else:  # PEFT: TRL's second forward of the policy ran with the adapters disabled
            ref_chosen, ref_rejected = sequence_logps(captured[0][1])
        rpg_loss = self.rpg_preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, labels)
        loss = loss + rpg_loss
        return (loss, outputs) if return_outputs else loss

    def rpg_preference_loss(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, labels=None):
        """Weighted sum of the ``decoupled`` / ``ce`` losses (batch means); logs their implicit rewards."""
        mode = "train" if self.model.training else "eval"
        ref_chosen = ref_chosen.to(policy_chosen.dtype)
        ref_rejected = ref_rejected.to(policy_rejected.dtype)
        total = policy_chosen.new_zeros(())
        for loss_type, weight in self.rpg_losses:
            if loss_type == "decoupled":
                out = decoupled_dpo_loss(
                    policy_chosen,
                    policy_rejected,
                    ref_chosen,
                    ref_rejected,
                    alpha_hat=self.args.alpha_hat,
                    omega_prime=self.args.omega_prime,
                )
            else:  # "ce"
                out = implicit_reward_cross_entropy_loss(
                    policy_chosen,
                    policy_rejected,
                    ref_chosen,
                    ref_rejected,
                    beta=self.beta,
                    labels=1.0 if labels is None else labels,
                )
            total = total + out.losses.mean() * weight
            chosen_rewards = self.accelerator.gather(out.chosen_rewards)
            rejected_rewards = self.accelerator.gather(out.rejected_rewards)
            metrics = self._metrics[mode]
            metrics[f"{loss_type}/loss"].append(self.accelerator.gather(out.losses.detach()).mean().item())
            metrics[f"{loss_type}/rewards/chosen"].append(chosen_rewards.mean().item())
            metrics[f"{loss_type}/rewards/rejected"].append(rejected_rewards.mean().item())
            metrics[f"{loss_type}/rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
            metrics[f"{loss_type}/rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        return total
