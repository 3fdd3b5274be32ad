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
from rpg_llm.ppo.critic import CausalLMCritic, PolicyAndCritic
from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.rewards import FunctionRewards, RewardModelScorer
from rpg_llm.ppo.sampling import position_ids_from_mask, sample_completions, suppress_tokens

__all__ = ["ResidualPPOTrainer", "token_level_rewards", "last_token_index"]


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
        callbacks: callables ``f(trainer, stats)`` run after each iteration (logging, timing, early stop).
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
        callbacks: Sequence[Callable] | None = None,
    ) -> None:
        self.args = args
        self.callbacks = list(callbacks or [])
        self.coefficients = args.coefficients()
        reward_funcs = reward_funcs if reward_funcs is not None else args.reward_funcs
        reward_model = reward_model if reward_model is not None else args.reward_model_path
        model_path = model if isinstance(model, (str, os.PathLike)) else None
        # Everything cheap is checked before anything heavy is loaded: bad input fails in one line.
        _check_inputs(
            args, train_dataset, model_path, reward_funcs, reward_model, reward_processing_class, ref_model, peft_config
        )
        self.tokenizer = _setup_tokenizer(processing_class, model_path)
        # Function rewards are ready now; a reward model is loaded after the policy (_setup_reward_model).
        self.reward_source = FunctionRewards(reward_funcs, args.reward_weights) if reward_funcs is not None else None
        self._setup_accelerator()
        policy, critic = self._setup_policy_and_critic(model, model_path, peft_config)
        self._setup_reference(ref_model, model_path, policy)
        if self.reward_source is None:
            self._setup_reward_model(reward_model, reward_processing_class)
        self._setup_data(train_dataset)
        self._setup_optimization(policy, critic)
        self.iteration = 0
        self.log_history: list[dict] = []
        self._permutations: dict[int, torch.Tensor] = {}
        if _tracker(args) is not None:
            self.accelerator.init_trackers("residual_ppo", config={"omega_prime": args.omega_prime, "alpha_hat": args.alpha_hat})

    # ------------------------------------------------------------------ setup, in the order __init__ runs it
    def _setup_accelerator(self) -> None:
        args = self.args
        mixed_precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=mixed_precision,
            cpu=args.use_cpu,
            log_with=_tracker(args),
            project_dir=args.output_dir,
        )
        set_seed(args.seed)  # before any weight is initialized (value head, LoRA adapters)

    def _setup_policy_and_critic(self, model, model_path, peft_config):
        """The policy (LoRA adapters under ``peft_config``) and the critic (gae only; a copy of the base trunk)."""
        from transformers import AutoModelForCausalLM

        init = dict(self.args.model_init_kwargs or {})
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

    def _setup_reference(self, ref_model, model_path, policy) -> None:
        """π_ref, frozen: ``ref_model``, else ``ref_model_path``, else the policy's starting weights.

        Under LoRA there is no second copy: π_ref is the policy with its adapters disabled (:meth:`_reference`).
        """
        if self.is_peft:
            self.ref_model = None
            return
        from transformers import AutoModelForCausalLM

        init = dict(self.args.model_init_kwargs or {})
        if ref_model is None:
            if self.args.ref_model_path is not None:
                ref_model = AutoModelForCausalLM.from_pretrained(self.args.ref_model_path, **init)
            elif model_path is not None:
                ref_model = AutoModelForCausalLM.from_pretrained(model_path, **init)
            else:
                ref_model = copy.deepcopy(policy)
        elif isinstance(ref_model, (str, os.PathLike)):
            ref_model = AutoModelForCausalLM.from_pretrained(ref_model, **init)
        ref_model.requires_grad_(False).eval()
        self.ref_model = ref_model.to(self.accelerator.device)

    def _setup_reward_model(self, reward_model, reward_processing_class) -> None:
        """r_R from a sequence-classification model (a path, or an object with its tokenizer)."""
        if isinstance(reward_model, (str, os.PathLike)):
            self.reward_source = RewardModelScorer.from_pretrained(reward_model)
        else:
            self.reward_source = RewardModelScorer(reward_model, reward_processing_class)
        self.reward_source.model.to(self.accelerator.device)

    def _setup_data(self, train_dataset) -> None:
        """Tokenized prompts and the run length: ``max_steps`` iterations, else enough to cover ``total_episodes``."""
        args = self.args
        self.train_dataset = self._tokenize(train_dataset)
        world = self.accelerator.num_processes
        total_episodes = args.total_episodes or len(train_dataset) * args.num_generations
        self.num_iterations = (
            args.max_steps if args.max_steps and args.max_steps > 0 else max(1, math.ceil(total_episodes / (args.local_batch_size * world)))
        )
        self.num_optimizer_steps = self.num_iterations * args.num_ppo_epochs * args.num_mini_batches

    def _setup_optimization(self, policy, critic) -> None:
        """One module (policy + critic), activation checkpointing, AdamW over what trains, the LR schedule; prepared."""
        from transformers import get_scheduler

        args = self.args
        self.model = PolicyAndCritic(policy, critic)
        self._checkpointing_kwargs = (
            getattr(args, "activation_checkpointing_kwargs", None) or args.gradient_checkpointing_kwargs or {"use_reentrant": False}
        )
        if getattr(args, "activation_checkpointing", False) or args.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(self._checkpointing_kwargs)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay, foreach=True
        )
        scheduler = get_scheduler(
            args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(self.num_optimizer_steps), num_training_steps=self.num_optimizer_steps
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
        rows = self.train_dataset.select(self._prompt_indices(iteration))
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
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=L + 1).logits[:, :-1]
        return selective_log_softmax(suppress_tokens(logits.float(), self.args.suppress_token_ids), completion_ids)

    @torch.no_grad()
    def _rollout(self, batch: dict, iteration: int) -> dict:
        args, device = self.args, self.accelerator.device
        prompt_ids = batch["input_ids"].to(device)
        prompt_mask = batch["attention_mask"].to(device)
        g = torch.Generator(device=device).manual_seed(args.seed * 7919 + iteration * 104_729 + self.accelerator.process_index)
        # TRL's unwrap_model_for_generation: plain module under DDP, gathered parameters under DeepSpeed ZeRO-3.
        with unwrap_model_for_generation(self.model, self.accelerator, gradient_checkpointing_kwargs=self._checkpointing_kwargs) as unwrapped:
            policy, critic = unwrapped.policy, unwrapped.critic  # critic: None for rloo / grpo
            policy.eval()
            with self.accelerator.autocast():
                sampled = sample_completions(
                    policy, prompt_ids, prompt_mask, args.response_length, self.tokenizer.eos_token_id,
                    self.tokenizer.pad_token_id, g, suppress_token_ids=args.suppress_token_ids,
                )
            completion_ids, mask = sampled.completion_ids, sampled.completion_mask
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
            position_ids = position_ids_from_mask(attention_mask)
            ref_logprobs, values = [], []
            ref_model, ref_context = self._reference(policy)
            step = args.local_rollout_forward_batch_size
            keep = args.response_length + 1
            with self.accelerator.autocast():
                for i in range(0, len(input_ids), step):
                    chunk = slice(i, i + step)
                    with ref_context():
                        ref_logprobs.append(
                            self._completion_logprobs(ref_model, input_ids[chunk], attention_mask[chunk], position_ids[chunk], completion_ids[chunk])
                        )
                    if critic is not None:
                        values.append(critic(input_ids[chunk], attention_mask[chunk], position_ids[chunk])[:, -keep:-1])
            policy.train()
        ref_logprobs = torch.cat(ref_logprobs)
        values = torch.cat(values).float() if values else None

        # r_R from the reward source, on text (and ids), TRL-style
        prompts = batch["columns"]["prompt"]
        texts = [self.tokenizer.decode(ids[m], skip_special_tokens=True) for ids, m in zip(completion_ids.cpu(), mask.cpu())]
        conversational = bool(prompts) and isinstance(prompts[0], list)
        completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
        extra = {k: v for k, v in batch["columns"].items() if k != "prompt"}
        addon_scores, addon_parts = self.reward_source(
            prompts=prompts, completions=completions, completion_ids=[ids[m].tolist() for ids, m in zip(completion_ids.cpu(), mask.cpu())], **extra
        )
        addon_scores = addon_scores.to(device)

        rewards = token_level_rewards(addon_scores, sampled.logprobs, ref_logprobs, mask, self.coefficients)
        if args.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = self._advantages(rewards, values, mask)
        fmask = mask.float()
        stats = {
            "reward/addon": addon_scores.mean(),
            "reward/omega_prime_logp_ref": (args.omega_prime * ref_logprobs * fmask).sum(-1).mean(),
            "reward/alpha_hat_logp_policy": (args.alpha_hat * sampled.logprobs * fmask).sum(-1).mean(),
            "reward/total": rewards.sum(-1).mean(),
            "objective/kl_to_ref": ((sampled.logprobs - ref_logprobs) * fmask).sum(-1).mean(),
            "objective/entropy": masked_mean(sampled.entropies, mask),
            "completion_length": fmask.sum(-1).mean(),
        }
        if values is not None:
            stats["value/mean"] = masked_mean(values, mask)
        for name, part in addon_parts.items():
            stats[f"reward/addon/{name}"] = part.mean().to(device)
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
                            rollout["input_ids"][idx], rollout["attention_mask"][idx], rollout["position_ids"][idx], args.response_length
                        )
                        logits = suppress_tokens(logits.float(), args.suppress_token_ids)
                        logprobs = selective_log_softmax(logits, rollout["completion_ids"][idx])
                        policy = clipped_policy_loss(logprobs, rollout["old_logprobs"][idx], rollout["advantages"][idx], args.cliprange, mask)
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
    def train(self, resume_from_checkpoint: str | bool | None = None) -> list[dict]:
        args, accelerator = self.args, self.accelerator
        resume = resume_from_checkpoint if resume_from_checkpoint is not None else args.resume_from_checkpoint
        if resume:
            self._load_checkpoint(resume)
        progress = None
        if accelerator.is_main_process and not args.disable_tqdm:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(TextColumn("[bold]PPO"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
            progress.start()
            task = progress.add_task("", total=self.num_iterations, completed=self.iteration)
        try:
            while self.iteration < self.num_iterations:
                started = time.perf_counter()
                rollout = self._rollout(self._prompt_batch(self.iteration), self.iteration)
                update = self._update(rollout, self.iteration)
                self.iteration += 1
                stats = {k: accelerator.reduce(v.detach().float().reshape(()), "mean").item() for k, v in rollout["stats"].items()}
                stats.update({k: accelerator.reduce(torch.tensor(v, device=accelerator.device), "mean").item() for k, v in update.items()})
                stats.update(
                    iteration=self.iteration,
                    episode=self.iteration * args.local_batch_size * accelerator.num_processes,
                    lr=self.lr_scheduler.get_last_lr()[0],
                    seconds_per_iteration=time.perf_counter() - started,
                )
                self.log_history.append(stats)
                if accelerator.is_main_process and (self.iteration % max(1, int(args.logging_steps)) == 0 or self.iteration == self.num_iterations):
                    accelerator.log({k: v for k, v in stats.items() if isinstance(v, (int, float))}, step=self.iteration)
                    if progress is not None:
                        progress.update(
                            task,
                            description=f"r_R {stats['reward/addon']:.3f}  KL {stats['objective/kl_to_ref']:.3f}  H {stats['objective/entropy']:.3f}",
                        )
                if progress is not None:
                    progress.advance(task)
                for callback in self.callbacks:
                    callback(self, stats)
                if args.save_strategy != "no" and args.save_steps and self.iteration % int(args.save_steps) == 0:
                    self.save_checkpoint()
        finally:
            if progress is not None:
                progress.stop()
        accelerator.end_training()
        return self.log_history

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-<iteration>``: model, optimizer, scheduler, RNG and trainer state, written atomically."""
        accelerator = self.accelerator
        final = Path(self.args.output_dir) / f"checkpoint-{self.iteration}"
        staging = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process and staging.exists():
            shutil.rmtree(staging)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        if accelerator.is_main_process:
            (staging / "trainer_state.json").write_text(json.dumps({"iteration": self.iteration, "log_history": self.log_history}))
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            self._rotate_checkpoints()
        accelerator.wait_for_everyone()
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
        """Policy (adapters only under LoRA) + tokenizer in ``output_dir``; gae's critic in ``output_dir/critic``."""
        output_dir = Path(output_dir or self.args.output_dir)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            unwrapped = self.accelerator.unwrap_model(self.model)
            unwrapped.policy.save_pretrained(output_dir)
            self.tokenizer.save_pretrained(output_dir)
            if unwrapped.critic is not None:
                unwrapped.critic.save_pretrained(output_dir / "critic")

    @property
    def policy(self):
        """The trained policy (unwrapped from DDP)."""
        return self._policy()


def _tracker(args: ResidualPPOConfig) -> str | None:
    """The accelerate tracker named by ``report_to`` (TensorBoard is the one supported), or None."""
    return "tensorboard" if "tensorboard" in (args.report_to or []) else None


def _check_inputs(
    args, train_dataset, model_path, reward_funcs, reward_model, reward_processing_class, ref_model, peft_config
) -> None:
    """The trainer's cheap checks (dataset, exactly one reward source, model paths), each one line."""
    if train_dataset is None or "prompt" not in train_dataset.column_names:
        columns = None if train_dataset is None else train_dataset.column_names
        raise ValueError(f"the train dataset needs a 'prompt' column (TRL's prompt-only format); got columns {columns}")
    if len(train_dataset) == 0:
        raise ValueError("the train dataset is empty")
    if (reward_funcs is None) == (reward_model is None):
        raise ValueError("give exactly one reward source: reward_funcs (reward_funcs=...) or a reward model (reward_model_path=...)")
    if model_path is not None:
        _check_model_path(model_path, "model_name_or_path")
    for name, path in (("ref_model_path", args.ref_model_path), ("value_model_path", args.value_model_path)):
        if path is not None:
            _check_model_path(path, name)
    if isinstance(reward_model, (str, os.PathLike)):
        _check_model_path(reward_model, "reward_model_path")
    elif reward_model is not None and reward_processing_class is None:
        raise ValueError("pass reward_processing_class (the reward model's tokenizer) with a reward model object")
    if peft_config is not None and (ref_model is not None or args.ref_model_path is not None):
        raise ValueError("with LoRA the reference is the base model (adapters disabled); do not pass ref_model")


def _setup_tokenizer(processing_class, model_path):
    """The given tokenizer, else the model's; it must have a pad token (prompts are left-padded)."""
    if processing_class is None:
        from transformers import AutoTokenizer

        if model_path is None:
            raise ValueError("pass processing_class (the tokenizer) when the model is given as an object")
        processing_class = AutoTokenizer.from_pretrained(model_path)
    if processing_class.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set one first (e.g. tokenizer.pad_token = tokenizer.eos_token)")
    return processing_class


def _check_model_path(path, name: str) -> None:
    """Fail in one line on a model that is neither a local directory nor resolvable on the hub cache."""
    if os.path.isdir(path):
        if not (Path(path) / "config.json").exists():
            raise ValueError(f"{name}={path!s} is a directory without config.json: not a transformers model")
        return
    if str(path).startswith(("/", "./", "../", "~", ".\\")) or os.path.isfile(path):
        # Clearly a local path: say so at once instead of asking the hub about it.
        raise ValueError(f"{name}={path!s}: no such model directory")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as error:  # OSError / ValueError / HF errors: one line, not a traceback
        raise ValueError(f"{name}={path!s}: cannot load a model config ({type(error).__name__}: {str(error).splitlines()[0]})") from None
