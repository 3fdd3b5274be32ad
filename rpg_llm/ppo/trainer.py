"""Residual PPO for causal language models (paper Sec. III, eq. 7-8; App. B).

One iteration, top to bottom (:meth:`ResidualPPOTrainer.train`):

1. take a batch of prompts (left-padded);
2. sample completions from πθ at temperature 1, keeping log πθ of every sampled token — these are
   both the −α̂·log πθ term of the reward and PPO's "old" log-probs (no second forward pass);
3. score: log π_ref of the same tokens (LoRA: the policy with adapters disabled), the critic's
   values, and r_R from the reward source;
4. per-token reward r_R·1[last token] + ω'·log π_ref − α̂·log πθ (:func:`token_level_rewards`,
   :func:`rpg.reward.residual_reward`), then the advantage of ``advantage_estimator``: GAE on the
   critic's values (:func:`rpg.advantage.masked_gae`), or — critic-free, ``num_generations`` completions
   per prompt — the sequence return R = Σ_t r_t against the prompt's other completions
   (:func:`rpg.advantage.leave_one_out_advantages`, :func:`rpg.advantage.group_normalized_advantages`),
   broadcast to every token; whitening;
5. ``num_ppo_epochs`` passes of ``num_mini_batches`` optimizer steps, each accumulating
   ``gradient_accumulation_steps`` micro-batches, on the clipped losses of :mod:`rpg.ppo`.

ω' = α̂ = β is classic KL-penalized RLHF (eq. 10); ω' ≠ α̂ decouples the pull toward the
reference from the entropy of the result. Runs under ``accelerate launch`` on 1..N processes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import entropy_from_logits, pad, selective_log_softmax

from rpg.advantage import group_normalized_advantages, leave_one_out_advantages, masked_gae, masked_mean, whiten
from rpg.ppo import clipped_policy_loss, clipped_value_loss
from rpg.reward import RewardCoefficients, residual_reward
from rpg_llm.launch import check_world_size
from rpg_llm.model_loading import (
    check_model_path,
    disable_dropout,
    float32_init_kwargs,
    prepare_frozen_model,
    split_state_dict,
)
from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.critic import CausalLMCritic, PolicyAndCritic
from rpg_llm.ppo.rewards import FunctionRewards, RewardModelScorer
from rpg_llm.ppo.sampling import position_ids_from_mask, sample_completions, suppress_tokens
from rpg_llm.reporting import TrainerReporting, split_callbacks

__all__ = ["ResidualPPOTrainer", "token_level_rewards", "last_token_index", "kl_estimate"]


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True of each row of ``mask`` (any padding side); rows must have one."""
    mask = mask.bool()
    if not mask.any(-1).all():
        raise ValueError("every row needs at least one real token")
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.full_like(positions, -1)).max(-1).values


def token_level_rewards(
    addon_scores: torch.Tensor,
    policy_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    mask: torch.Tensor,
    coefficients: RewardCoefficients,
) -> torch.Tensor:
    """Per-token RPG reward on completion tokens (eq. 8), 0 on padding.

    r_t = r_R·1[t is the last real token] + ω'·log π_ref(y_t) − α̂·log πθ(y_t); the sequence-level
    r_R lands on the last real token (the EOS if the completion stopped, else the last sampled one).
    """
    mask = mask.bool()
    addon = torch.zeros_like(policy_logprobs)
    addon.scatter_(-1, last_token_index(mask).unsqueeze(-1), addon_scores.to(addon.dtype).unsqueeze(-1))
    rewards = residual_reward(addon, policy_logprobs, ref_logprobs, coefficients)
    return rewards * mask.to(rewards.dtype)


def kl_estimate(policy_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(πθ ‖ π_ref) from tokens sampled from πθ (TRL's ``kl_estimator``; logged only).

    k1 = log πθ − log π_ref (unbiased, can be negative per sample); k3 = (r − 1) − log r with
    r = π_ref/πθ (unbiased, never negative, lower variance). The reward of eq. 8 uses the exact log-probs.
    """
    log_ratio = ref_logprobs - policy_logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {estimator!r}")


class ResidualPPOTrainer:
    """PPO with the residual reward r_R + ω'·log π_ref − α̂·log πθ for an ``AutoModelForCausalLM``.

    Args:
        args: :class:`ResidualPPOConfig`.
        model: the policy (a path or a loaded causal LM); its starting weights are the reference.
        processing_class: the tokenizer (needs a pad token; prompts are left-padded).
        train_dataset: a ``datasets.Dataset`` with a "prompt" column (TRL standard or conversational).
        reward_funcs: callables (or 'module:function' strings) with TRL's reward signature, or
        reward_model: a path / ``AutoModelForSequenceClassification`` (with ``reward_processing_class``).
        peft_config: a peft config: the policy gets adapters and the reference is the same
            model with adapters disabled (no second copy).
        callbacks: callables ``f(trainer, stats)`` run after each iteration (logging, timing, early stop),
            and/or transformers ``TrainerCallback`` objects, driven with the ``report_to`` integrations.
        eval_dataset: prompts (a "prompt" column) whose greedy completions and r_R are logged as a table
            ``num_sample_generations`` times during training (TRL's sample generations).

    Loaded models train in float32 unless ``model_init_kwargs`` names a dtype, and every model runs
    without dropout (see :mod:`rpg_llm.model_loading`).
    """

    def __init__(
        self,
        args: ResidualPPOConfig,
        model,
        processing_class=None,
        train_dataset=None,
        reward_funcs: Sequence[Callable | str] | None = None,
        reward_model=None,
        reward_processing_class=None,
        ref_model=None,
        peft_config=None,
        callbacks: Sequence | None = None,
        eval_dataset=None,
    ) -> None:
        self.args = args
        trainer_callbacks, self.callbacks = split_callbacks(callbacks)
        self.coefficients = args.coefficients()
        reward_funcs = reward_funcs if reward_funcs is not None else args.reward_funcs
        reward_model = reward_model if reward_model is not None else args.reward_model_path
        model_path = model if isinstance(model, (str, os.PathLike)) else None
        # Everything cheap is checked before anything heavy is loaded: bad input fails in one line.
        _check_inputs(
            args, train_dataset, model_path, reward_funcs, reward_model, reward_processing_class, ref_model, peft_config
        )
        if eval_dataset is not None:
            _check_prompt_dataset(eval_dataset, "eval dataset")
        self.tokenizer = _setup_tokenizer(processing_class, model_path, args.model_init_kwargs)
        self.stop_token_id = self.tokenizer.eos_token_id if args.stop_token == "eos" else args.stop_token_id
        if (args.stop_token == "eos" or args.missing_eos_penalty is not None) and self.tokenizer.eos_token_id is None:
            raise ValueError("stop_token='eos' and missing_eos_penalty need a tokenizer with an EOS token")
        # Function rewards are ready now (and their signature checked); a reward model is loaded after the policy.
        self.reward_source = None
        if reward_funcs is not None:
            self.reward_source = FunctionRewards(reward_funcs, args.reward_weights)
            self.reward_source.check_signature([c for c in train_dataset.column_names if c != "prompt"])
        self._setup_accelerator()
        policy, critic = self._setup_policy_and_critic(model, model_path, peft_config)
        ref_model = self._setup_reference(ref_model, model_path, policy)
        if self.reward_source is None:
            self._setup_reward_model(reward_model, reward_processing_class)
        # TRL disables dropout in all four: the train-mode forward must be the sampling law (ratio 1 before a step).
        disable_dropout(policy, critic, ref_model, getattr(self.reward_source, "model", None))
        self._place_frozen_models(ref_model)
        self._setup_data(train_dataset, eval_dataset)
        self._setup_optimization(policy, critic)
        self.iteration = 0
        self.log_history: list[dict] = []
        self._permutations: dict[int, torch.Tensor] = {}
        self.reporting = TrainerReporting(
            args,
            self._policy(),
            self.tokenizer,
            self.optimizer,
            self.lr_scheduler,
            trainer_callbacks,
            self.accelerator.is_main_process,
            self.num_iterations,
        )

    # ------------------------------------------------------------------ setup, in the order __init__ runs it
    def _setup_accelerator(self) -> None:
        args = self.args
        mixed_precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=mixed_precision,
            cpu=args.use_cpu,
        )
        check_world_size(self.accelerator.num_processes, "ppo")
        set_seed(args.seed)  # before any weight is initialized (value head, LoRA adapters)

    def _setup_policy_and_critic(self, model, model_path, peft_config):
        """The policy (LoRA adapters under ``peft_config``) and the critic (gae only; a copy of the base trunk)."""
        from transformers import AutoModelForCausalLM

        init = float32_init_kwargs(self.args.model_init_kwargs)
        policy = AutoModelForCausalLM.from_pretrained(model_path, **init) if model_path is not None else model
        policy.config.use_cache = False
        # RLOO / GRPO take their baseline from the other completions of the prompt: no critic at all.
        if self.args.advantage_estimator != "gae":
            critic = None
        elif self.args.value_model_path is not None:
            critic = CausalLMCritic.from_pretrained(self.args.value_model_path, **init)
        else:
            critic = CausalLMCritic.from_causal_lm(policy)  # before the adapters: the critic gets none
        self.is_peft = peft_config is not None
        if self.is_peft:
            from peft import get_peft_model

            policy = get_peft_model(policy, peft_config)
        return policy, critic

    def _setup_reference(self, ref_model, model_path, policy):
        """π_ref (returned, placed by :meth:`_place_frozen_models`): ``ref_model``, else ``ref_model_path``, else the
        policy's starting weights.

        Under LoRA there is no second copy: π_ref is the policy with its adapters disabled (:meth:`_reference`).
        """
        self.ref_model = None
        if self.is_peft:
            return None
        from transformers import AutoModelForCausalLM

        init = float32_init_kwargs(self.args.model_init_kwargs)
        if ref_model is None:
            if self.args.ref_model_path is not None:
                ref_model = AutoModelForCausalLM.from_pretrained(self.args.ref_model_path, **init)
            elif model_path is not None:
                ref_model = AutoModelForCausalLM.from_pretrained(model_path, **init)
            else:
                ref_model = copy.deepcopy(policy)
        elif isinstance(ref_model, (str, os.PathLike)):
            ref_model = AutoModelForCausalLM.from_pretrained(ref_model, **init)
        return ref_model

    def _setup_reward_model(self, reward_model, reward_processing_class) -> None:
        """r_R from a sequence-classification model (a path, loaded with ``model_init_kwargs``, or an object with its
        tokenizer)."""
        if isinstance(reward_model, (str, os.PathLike)):
            init = float32_init_kwargs(self.args.model_init_kwargs)
            self.reward_source = RewardModelScorer.from_pretrained(reward_model, **init)
        else:
            self.reward_source = RewardModelScorer(reward_model, reward_processing_class)

    def _place_frozen_models(self, ref_model) -> None:
        """Reference and reward model, frozen, placed as TRL places them (ZeRO-3 / FSDP: sharded)."""
        if ref_model is not None:
            self.ref_model = prepare_frozen_model(ref_model, self.accelerator)
        if isinstance(self.reward_source, RewardModelScorer):
            self.reward_source.model = prepare_frozen_model(self.reward_source.model, self.accelerator)
            self.reward_source.device = self.accelerator.device

    def _setup_data(self, train_dataset, eval_dataset=None) -> None:
        """Tokenized prompts and the run length: ``max_steps`` iterations, else enough to cover ``total_episodes``
        (default, as in TRL: ``num_train_epochs`` passes over the dataset)."""
        args = self.args
        self.train_dataset = self._tokenize(train_dataset)
        self.eval_dataset = self._tokenize(eval_dataset) if eval_dataset is not None else None
        world = self.accelerator.num_processes
        total_episodes = (
            args.total_episodes or max(1, int(args.num_train_epochs * len(train_dataset))) * args.num_generations
        )
        self.num_iterations = (
            args.max_steps
            if args.max_steps and args.max_steps > 0
            else max(1, math.ceil(total_episodes / (args.local_batch_size * world)))
        )
        self.num_optimizer_steps = self.num_iterations * args.num_ppo_epochs * args.num_mini_batches

    def _setup_optimization(self, policy, critic) -> None:
        """One module (policy + critic), activation checkpointing, ``args.optim`` over what trains, the LR schedule
        (``lr_scheduler_type`` with ``lr_scheduler_kwargs``); prepared."""
        from transformers import Trainer, get_scheduler
        from transformers.trainer_pt_utils import get_parameter_names

        args = self.args
        self.model = PolicyAndCritic(policy, critic)
        self._checkpointing_kwargs = (
            getattr(args, "activation_checkpointing_kwargs", None)
            or args.gradient_checkpointing_kwargs
            or {"use_reentrant": False}
        )
        if getattr(args, "activation_checkpointing", False) or args.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(self._checkpointing_kwargs)
        # Trainer's rule: no weight decay on biases and norm weights; Trainer's optimizer for ``optim``.
        no_decay_patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
        decay = set(get_parameter_names(self.model, [torch.nn.LayerNorm], no_decay_patterns))
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trainable if n in decay], "weight_decay": args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
        ]
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, self.model)
        optimizer = optimizer_cls([g for g in groups if g["params"]], **optimizer_kwargs)
        scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=args.get_warmup_steps(self.num_optimizer_steps),
            num_training_steps=self.num_optimizer_steps,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs or None,
        )
        # The scheduler is stepped by hand once per optimizer step: accelerate's prepared scheduler would step
        # num_processes times per call (it assumes the dataloader was sharded), ending the schedule early.
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.lr_scheduler = scheduler
        self.accelerator.register_for_checkpointing(self.lr_scheduler)

    # ------------------------------------------------------------------ data
    def _tokenize(self, dataset):
        from trl import maybe_apply_chat_template

        tokenizer = self.tokenizer

        def encode(example):
            text = maybe_apply_chat_template({"prompt": example["prompt"]}, tokenizer)["prompt"]
            conversational = isinstance(example["prompt"], list)
            ids = tokenizer(text, add_special_tokens=not conversational)["input_ids"]
            if self.args.max_prompt_length is not None:
                ids = ids[-self.args.max_prompt_length :]
            return {"prompt_input_ids": ids}

        return dataset.map(encode)

    def _prompt_indices(self, iteration: int) -> list[int]:
        """This process's prompts for ``iteration``: a seeded reshuffle per pass over the data (resumable).

        Each prompt is listed ``num_generations`` times in a row: its completions form one group,
        on one process (the group baselines of RLOO / GRPO need no communication).
        """
        n = len(self.train_dataset)
        k = self.args.num_generations
        local = self.args.local_batch_size // k
        start = (iteration * self.accelerator.num_processes + self.accelerator.process_index) * local
        indices = []
        for position in range(start, start + local):
            epoch = position // n
            if epoch not in self._permutations:
                g = torch.Generator().manual_seed(self.args.seed * 1_000_003 + epoch)
                self._permutations[epoch] = torch.randperm(n, generator=g)
            indices += [int(self._permutations[epoch][position % n])] * k
        return indices

    def _prompt_batch(self, iteration: int) -> dict:
        return self._prompt_rows(self.train_dataset, self._prompt_indices(iteration))

    def _prompt_rows(self, dataset, indices: list[int]) -> dict:
        rows = dataset.select(indices)
        ids = [torch.tensor(x, dtype=torch.long) for x in rows["prompt_input_ids"]]
        input_ids = pad(ids, padding_value=self.tokenizer.pad_token_id, padding_side="left")
        attention_mask = pad([torch.ones_like(x) for x in ids], padding_value=0, padding_side="left")
        columns = {k: rows[k] for k in rows.column_names if k not in ("prompt_input_ids",)}
        return {"input_ids": input_ids, "attention_mask": attention_mask, "columns": columns}

    # ------------------------------------------------------------------ rollout
    def _policy(self):
        return self.accelerator.unwrap_model(self.model).policy

    def _reference(self, policy=None):
        """π_ref and the context to score it in: under LoRA ``policy`` itself with adapters disabled.

        ``policy`` is the unwrapped policy the rollout samples with (default: the trained one).
        """
        if not self.is_peft:
            return self.ref_model, nullcontext
        policy = self._policy() if policy is None else policy
        return policy, policy.disable_adapter

    def _completion_logprobs(self, model, input_ids, attention_mask, position_ids, completion_ids) -> torch.Tensor:
        L = completion_ids.shape[1]
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=L + 1
        ).logits[:, :-1]
        return selective_log_softmax(suppress_tokens(logits.float(), self.args.suppress_token_ids), completion_ids)

    @torch.no_grad()
    def _rollout(self, batch: dict, iteration: int) -> dict:
        args, device = self.args, self.accelerator.device
        prompt_ids = batch["input_ids"].to(device)
        prompt_mask = batch["attention_mask"].to(device)
        g = torch.Generator(device=device).manual_seed(
            args.seed * 7919 + iteration * 104_729 + self.accelerator.process_index
        )
        # TRL's unwrap_model_for_generation: plain module under DDP, gathered parameters under DeepSpeed ZeRO-3.
        with unwrap_model_for_generation(
            self.model,
            self.accelerator,
            gather_deepspeed3_params=args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self._checkpointing_kwargs,
        ) as unwrapped:
            policy, critic = unwrapped.policy, unwrapped.critic  # critic: None for rloo / grpo
            policy.eval()
            with self.accelerator.autocast():
                sampled = sample_completions(
                    policy,
                    prompt_ids,
                    prompt_mask,
                    args.response_length,
                    self.stop_token_id,
                    self.tokenizer.pad_token_id,
                    g,
                    suppress_token_ids=args.suppress_token_ids,
                )
            completion_ids, mask = sampled.completion_ids, sampled.completion_mask
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
            position_ids = position_ids_from_mask(attention_mask)
            ref_logprobs, values = self._reference_logprobs_and_values(
                policy, critic, input_ids, attention_mask, position_ids, completion_ids
            )
            policy.train()

        addon_scores, addon_parts = self._addon_scores(batch["columns"], completion_ids, mask)
        rewards = token_level_rewards(addon_scores, sampled.logprobs, ref_logprobs, mask, self.coefficients)
        if args.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = self._advantages(rewards, values, mask)
        stats = self._rollout_stats(addon_scores, addon_parts, sampled, ref_logprobs, rewards, values, mask)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "completion_ids": completion_ids,
            "mask": mask,
            "old_logprobs": sampled.logprobs,
            "old_values": values,
            "advantages": advantages,
            "returns": returns,
            "stats": stats,
        }

    def _advantages(self, rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor):
        """Per-token advantages (and GAE's λ-returns, None without a critic) of the rollout's eq. 8 rewards.

        gae: GAE on the critic's values. rloo / grpo: the undiscounted sequence return R = Σ_t r_t of each
        completion against the other completions of its prompt, the same A on every token of the completion.
        """
        args = self.args
        if args.advantage_estimator == "gae":
            advantages, returns = masked_gae(rewards, values * mask, mask, args.gamma, args.lam)
        else:
            sequence_returns = rewards.sum(-1)
            if args.advantage_estimator == "rloo":
                sequence_advantages = leave_one_out_advantages(sequence_returns, args.num_generations)
            else:
                sequence_advantages = group_normalized_advantages(
                    sequence_returns, args.num_generations, args.scale_rewards
                )
            advantages, returns = sequence_advantages.unsqueeze(-1) * mask, None
        if args.whiten_advantages:
            advantages = whiten(advantages, mask)
        return advantages, returns

    def _reference_logprobs_and_values(self, policy, critic, input_ids, attention_mask, position_ids, completion_ids):
        """log π_ref of every completion token and, with a critic, V at every completion position: no-grad
        forwards in chunks of ``local_rollout_forward_batch_size`` rows."""
        args = self.args
        ref_logprobs, values = [], []
        ref_model, ref_context = self._reference(policy)
        step = args.local_rollout_forward_batch_size
        keep = args.response_length + 1
        with self.accelerator.autocast():
            for i in range(0, len(input_ids), step):
                chunk = slice(i, i + step)
                with ref_context():
                    ref_logprobs.append(
                        self._completion_logprobs(
                            ref_model,
                            input_ids[chunk],
                            attention_mask[chunk],
                            position_ids[chunk],
                            completion_ids[chunk],
                        )
                    )
                if critic is not None:
                    values.append(critic(input_ids[chunk], attention_mask[chunk], position_ids[chunk])[:, -keep:-1])
        return torch.cat(ref_logprobs), (torch.cat(values).float() if values else None)

    def _rollout_stats(self, addon_scores, addon_parts, sampled, ref_logprobs, rewards, values, mask) -> dict:
        """What a rollout logs: each reward component of eq. 8 summed per completion, the KL to the reference
        (``kl_estimator``), the entropy and the completion length, averaged over completions."""
        args, fmask = self.args, mask.float()
        kl = kl_estimate(sampled.logprobs, ref_logprobs, args.kl_estimator) * fmask
        stats = {
            "reward/addon": addon_scores.mean(),
            "reward/omega_prime_logp_ref": (args.omega_prime * ref_logprobs * fmask).sum(-1).mean(),
            "reward/alpha_hat_logp_policy": (args.alpha_hat * sampled.logprobs * fmask).sum(-1).mean(),
            "reward/total": rewards.sum(-1).mean(),
            "objective/kl_to_ref": kl.sum(-1).mean(),
            "objective/entropy": masked_mean(sampled.entropies, mask),
            "completion_length": fmask.sum(-1).mean(),
        }
        if values is not None:
            stats["value/mean"] = masked_mean(values, mask)
        for name, part in addon_parts.items():
            stats[f"reward/addon/{name}"] = part.mean().to(self.accelerator.device)
        return stats

    def _addon_scores(self, columns: dict, completion_ids: torch.Tensor, mask: torch.Tensor) -> tuple:
        """r_R of each completion from the reward source, on text (and ids), TRL-style; minus
        ``missing_eos_penalty`` for completions without an EOS (TRL's rule)."""
        prompts = columns["prompt"]
        ids_cpu, mask_cpu = completion_ids.cpu(), mask.cpu()
        texts = [self.tokenizer.decode(ids[m], skip_special_tokens=True) for ids, m in zip(ids_cpu, mask_cpu)]
        conversational = bool(prompts) and isinstance(prompts[0], list)
        completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
        extra = {k: v for k, v in columns.items() if k != "prompt"}
        ids_lists = [ids[m].tolist() for ids, m in zip(ids_cpu, mask_cpu)]
        addon_scores, addon_parts = self.reward_source(
            prompts=prompts, completions=completions, completion_ids=ids_lists, **extra
        )
        addon_scores = addon_scores.to(completion_ids.device)
        if self.args.missing_eos_penalty is not None:
            has_eos = ((completion_ids == self.tokenizer.eos_token_id) & mask.bool()).any(-1)
            addon_scores = addon_scores - self.args.missing_eos_penalty * (~has_eos).to(addon_scores.dtype)
        return addon_scores, addon_parts

    # ------------------------------------------------------------------ update
    def _update(self, rollout: dict, iteration: int) -> dict:
        args, accelerator = self.args, self.accelerator
        n = rollout["input_ids"].shape[0]
        micro = args.per_device_train_batch_size
        totals = {"loss/policy": 0.0, "policy/clipfrac": 0.0, "policy/approxkl": 0.0, "policy/entropy": 0.0}
        if rollout["old_values"] is not None:
            totals["loss/value"] = 0.0
        count = 0
        g = torch.Generator().manual_seed(args.seed * 31 + iteration)
        self.model.train()
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(n, generator=g)
            for start in range(0, n, args.local_mini_batch_size):
                mini = order[start : start + args.local_mini_batch_size]
                for micro_start in range(0, len(mini), micro):
                    idx = mini[micro_start : micro_start + micro].to(accelerator.device)
                    mask = rollout["mask"][idx]
                    with accelerator.accumulate(self.model), accelerator.autocast():
                        logits, values = self.model(
                            rollout["input_ids"][idx],
                            rollout["attention_mask"][idx],
                            rollout["position_ids"][idx],
                            args.response_length,
                        )
                        logits = suppress_tokens(logits.float(), args.suppress_token_ids)
                        logprobs = selective_log_softmax(logits, rollout["completion_ids"][idx])
                        policy = clipped_policy_loss(
                            logprobs, rollout["old_logprobs"][idx], rollout["advantages"][idx], args.cliprange, mask
                        )
                        loss = policy.loss
                        if values is not None:
                            value_loss = clipped_value_loss(
                                values, rollout["old_values"][idx], rollout["returns"][idx], args.cliprange_value, mask
                            )
                            loss = loss + args.vf_coef * value_loss
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and args.max_grad_norm and args.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                        self.optimizer.step()
                        if accelerator.sync_gradients:
                            self.lr_scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    with torch.no_grad():
                        totals["loss/policy"] += policy.loss.item()
                        if values is not None:
                            totals["loss/value"] += value_loss.item()
                        totals["policy/clipfrac"] += policy.clip_fraction.item()
                        totals["policy/approxkl"] += policy.approx_kl.item()
                        totals["policy/entropy"] += masked_mean(entropy_from_logits(logits.detach()), mask).item()
                    count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}

    # ------------------------------------------------------------------ loop
    def _interval(self, steps: float) -> int:
        """``logging_steps`` / ``save_steps`` in iterations; a value < 1 is a fraction of all iterations (TRL)."""
        return max(1, math.ceil(self.num_iterations * steps)) if steps < 1 else int(steps)

    def _iteration_stats(self, rollout: dict, update: dict, started: float) -> dict:
        args, accelerator = self.args, self.accelerator
        stats = {}
        for k, v in rollout["stats"].items():
            stats[k] = accelerator.reduce(v.detach().float().reshape(()), "mean").item()
        for k, v in update.items():
            stats[k] = accelerator.reduce(torch.tensor(v, device=accelerator.device), "mean").item()
        stats.update(
            iteration=self.iteration,
            episode=self.iteration * args.local_batch_size * accelerator.num_processes,
            lr=self.lr_scheduler.get_last_lr()[0],
            seconds_per_iteration=time.perf_counter() - started,
        )
        return stats

    def train(self, resume_from_checkpoint: str | bool | None = None) -> list[dict]:
        args = self.args
        resume = resume_from_checkpoint if resume_from_checkpoint is not None else args.resume_from_checkpoint
        if resume:
            self._load_checkpoint(resume)
        logging_every, saving_every = self._interval(args.logging_steps), self._interval(args.save_steps)
        sampling_every = None
        if self.eval_dataset is not None and args.num_sample_generations > 0:
            sampling_every = max(1, self.num_iterations // args.num_sample_generations)  # TRL's frequency
        progress = self._progress_bar()
        self.reporting.train_begin(self.iteration)
        try:
            while self.iteration < self.num_iterations:
                started = time.perf_counter()
                rollout = self._rollout(self._prompt_batch(self.iteration), self.iteration)
                update = self._update(rollout, self.iteration)
                self.iteration += 1
                stats = self._iteration_stats(rollout, update, started)
                self.log_history.append(stats)
                is_logging_step = self.iteration % logging_every == 0 or self.iteration == self.num_iterations
                if args.logging_strategy != "no" and is_logging_step:
                    self.reporting.log(self.iteration, {k: v for k, v in stats.items() if isinstance(v, (int, float))})
                    if progress is not None:
                        summary = (
                            f"r_R {stats['reward/addon']:.3f}  KL {stats['objective/kl_to_ref']:.3f}  "
                            f"H {stats['objective/entropy']:.3f}"
                        )
                        progress[0].update(progress[1], description=summary)
                if progress is not None:
                    progress[0].advance(progress[1])
                if sampling_every is not None and (self.iteration - 1) % sampling_every == 0:
                    self.log_sample_completions()
                for callback in self.callbacks:
                    callback(self, stats)
                if args.save_strategy != "no" and self.iteration % saving_every == 0:
                    self.save_checkpoint()
                if self.reporting.step_end(self.iteration):
                    break
        finally:
            if progress is not None:
                progress[0].stop()
        self.reporting.train_end()
        # No accelerator.end_training(): it destroys the process group, and save_model after train() needs it.
        return self.log_history

    def _progress_bar(self):
        if not self.accelerator.is_main_process or self.args.disable_tqdm:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("[bold]PPO"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        progress = Progress(*columns, TextColumn("{task.description}"))
        progress.start()
        return progress, progress.add_task("", total=self.num_iterations, completed=self.iteration)

    @torch.no_grad()
    def log_sample_completions(self) -> list[dict]:
        """TRL's sample generations: greedy completions of the first ``per_device_eval_batch_size`` eval
        prompts of each process, with their r_R, as a table: returned, written to
        ``output_dir/completions/iteration-<n>.json`` and logged (key "completions", markdown) to ``report_to``."""
        from accelerate.utils import gather_object

        from rpg.utils.atomic import write_json_atomic

        count = min(len(self.eval_dataset), self.args.per_device_eval_batch_size)
        process, processes = self.accelerator.process_index, self.accelerator.num_processes
        indices = [(process * count + i) % len(self.eval_dataset) for i in range(count)]
        batch = self._prompt_rows(self.eval_dataset, indices)
        device = self.accelerator.device
        with unwrap_model_for_generation(
            self.model,
            self.accelerator,
            gather_deepspeed3_params=self.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self._checkpointing_kwargs,
        ) as unwrapped:
            unwrapped.policy.eval()
            with self.accelerator.autocast():
                sampled = sample_completions(
                    unwrapped.policy,
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                    self.args.response_length,
                    self.stop_token_id,
                    self.tokenizer.pad_token_id,
                    greedy=True,
                )
            unwrapped.policy.train()
        scores, _ = self._addon_scores(batch["columns"], sampled.completion_ids, sampled.completion_mask)
        texts = [
            self.tokenizer.decode(ids[m], skip_special_tokens=True)
            for ids, m in zip(sampled.completion_ids.cpu(), sampled.completion_mask.cpu())
        ]
        rows = [
            {"prompt": p if isinstance(p, str) else json.dumps(p), "completion": t, "score": float(r)}
            for p, t, r in zip(batch["columns"]["prompt"], texts, scores.tolist())
        ]
        rows = gather_object(rows) if processes > 1 else rows
        if self.accelerator.is_main_process:
            write_json_atomic(Path(self.args.output_dir) / "completions" / f"iteration-{self.iteration}.json", rows)
            lines = ["| prompt | completion | score |", "|---|---|---|"]
            lines += [f"| {r['prompt']} | {r['completion']} | {r['score']:.4f} |".replace("\n", " ") for r in rows]
            self.reporting.log(self.iteration, {"completions": "\n".join(lines)})
        return rows

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-<iteration>``: model, optimizer, scheduler, RNG and trainer state, "
        "written atomically."""
        accelerator = self.accelerator
        final = Path(self.args.output_dir) / f"checkpoint-{self.iteration}"
        staging = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process and staging.exists():
            shutil.rmtree(staging)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        if accelerator.is_main_process:
            (staging / "trainer_state.json").write_text(
                json.dumps({"iteration": self.iteration, "log_history": self.log_history})
            )
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            self._rotate_checkpoints()
        accelerator.wait_for_everyone()
        self.reporting.save(self.iteration)
        return final

    def _checkpoints(self) -> list[Path]:
        """The finished ``checkpoint-<iteration>`` folders of ``output_dir``, oldest first (no ``.tmp`` staging)."""
        found = Path(self.args.output_dir).glob("checkpoint-*[0-9]")
        return sorted(found, key=lambda path: int(path.name.split("-")[-1]))

    def _rotate_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        for old in self._checkpoints()[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, resume: str | bool) -> None:
        if resume is True or str(resume).lower() in ("true", "latest"):
            checkpoints = self._checkpoints()
            if not checkpoints:
                raise ValueError(f"no checkpoint-* to resume from in {self.args.output_dir}")
            path = checkpoints[-1]
        else:
            path = Path(resume)
        if not (path / "trainer_state.json").exists():
            raise ValueError(f"{path} is not a checkpoint of this trainer (no trainer_state.json)")
        self.accelerator.load_state(str(path))
        state = json.loads((path / "trainer_state.json").read_text())
        self.iteration = int(state["iteration"])
        self.log_history = list(state["log_history"])

    def save_model(self, output_dir: str | Path | None = None) -> None:
        """Policy (adapters only under LoRA) + tokenizer in ``output_dir``; gae's critic in ``output_dir/critic``.

        Every process takes part: ``accelerator.get_state_dict`` gathers the full weights under
        DeepSpeed ZeRO-3 (which needs ``zero3_save_16bit_model: true``, as TRL's zero3 config has) and
        FSDP; the main process writes them. Under DDP / one process it is the plain state dict.
        """
        output_dir = Path(output_dir or self.args.output_dir)
        self.accelerator.wait_for_everyone()
        state_dict = self.accelerator.get_state_dict(self.model)
        if self.accelerator.is_main_process:
            unwrapped = self.accelerator.unwrap_model(self.model)
            unwrapped.policy.save_pretrained(output_dir, state_dict=split_state_dict(state_dict, "policy"))
            self.tokenizer.save_pretrained(output_dir)
            if unwrapped.critic is not None:
                unwrapped.critic.save_pretrained(
                    output_dir / "critic", state_dict=split_state_dict(state_dict, "critic")
                )
        self.accelerator.wait_for_everyone()

    @property
    def policy(self):
        """The trained policy (unwrapped from DDP)."""
        return self._policy()


def _check_inputs(
    args, train_dataset, model_path, reward_funcs, reward_model, reward_processing_class, ref_model, peft_config
) -> None:
    """The trainer's cheap checks (dataset, exactly one reward source, model paths), each one line."""
    _check_prompt_dataset(train_dataset, "train dataset")
    if (reward_funcs is None) == (reward_model is None):
        raise ValueError(
            "give exactly one reward source: reward_funcs (reward_funcs=...) or a reward model (reward_model_path=...)"
        )
    if model_path is not None:
        check_model_path(model_path, "model_name_or_path")
    for name, path in (("ref_model_path", args.ref_model_path), ("value_model_path", args.value_model_path)):
        if path is not None:
            check_model_path(path, name)
    if isinstance(reward_model, (str, os.PathLike)):
        check_model_path(reward_model, "reward_model_path")
    elif reward_model is not None and reward_processing_class is None:
        raise ValueError("pass reward_processing_class (the reward model's tokenizer) with a reward model object")
    if peft_config is not None and (ref_model is not None or args.ref_model_path is not None):
        raise ValueError(
            "with LoRA the reference is the base model (adapters disabled); do not pass ref_model / ref_model_path"
        )


def _check_prompt_dataset(dataset, name: str) -> None:
    if dataset is None or "prompt" not in dataset.column_names:
        columns = None if dataset is None else dataset.column_names
        raise ValueError(f"the {name} needs a 'prompt' column (TRL's prompt-only format); got columns {columns}")
    if len(dataset) == 0:
        raise ValueError(f"the {name} is empty")


def _setup_tokenizer(processing_class, model_path, model_init_kwargs=None):
    """The given tokenizer, else the model's (with the revision / trust_remote_code of ``model_init_kwargs``); it must
    have a pad token (prompts are left-padded)."""
    if processing_class is None:
        from transformers import AutoTokenizer

        if model_path is None:
            raise ValueError("pass processing_class (the tokenizer) when the model is given as an object")
        init = model_init_kwargs or {}
        tokenizer_kwargs = {key: init[key] for key in ("revision", "trust_remote_code", "token") if key in init}
        processing_class = AutoTokenizer.from_pretrained(model_path, **tokenizer_kwargs)
    if processing_class.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token; set one first (e.g. tokenizer.pad_token = tokenizer.eos_token)"
        )
    return processing_class
