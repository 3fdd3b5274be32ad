"""Frozen copy of the PPO update as of commit 864929d, before the fast path of
:mod:`rpg_control.algorithm` / :mod:`rpg_control.actor_critic`.

It is the reference the fast update is measured against (``benchmarks/control_throughput.py``,
``update legacy``) and checked against (``tests/control/test_fast_update.py``). It runs the
networks through their ``nn.Sequential`` modules (``nn.Linear`` + ``torch.tanh``/``relu``/``elu``
under autograd), a fresh index per tensor per minibatch, per-tensor ``clip_grad_norm_`` and the
``foreach`` Adam. Not used for training.
"""

from __future__ import annotations

import torch

from rpg.advantage import whiten
from rpg.ppo import clipped_policy_loss, clipped_value_loss
from rpg_control.actor_critic import ActorCritic, GaussianActor


def legacy_distribution_params(actor: GaussianActor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``GaussianActor.distribution_params`` as it was: the ``nn.Sequential`` forward."""
    out = actor.mean_net(obs)
    if actor.std_type == "global":
        return out, actor.log_std.expand_as(out)
    mean, log_std = out.split(actor.act_dim, dim=-1)
    return mean, log_std.clamp(-20.0, 2.0)


def legacy_critic(model: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    return model.critic.net(obs).squeeze(-1)


def legacy_sample(actor: GaussianActor, obs: torch.Tensor, generator: torch.Generator | None = None):
    """``GaussianActor.sample`` as it was (acting forward through ``nn.Sequential``)."""
    mean, log_std = legacy_distribution_params(actor, obs)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    actions = mean + noise * torch.exp(log_std)
    return actions, GaussianActor.log_prob(actions, mean, log_std)


def legacy_make_optimizer(model: ActorCritic, config) -> torch.optim.Adam:
    return torch.optim.Adam(
        [
            {"params": list(model.actor.parameters()), "name": "actor"},
            {"params": list(model.critic.parameters()), "name": "critic"},
        ],
        lr=config.learning_rate,
        eps=1e-5,
        foreach=True,
    )


def legacy_ppo_update(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout,
    config,
    entropy_coef: float,
    update_actor: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    advantages, returns = rollout.advantages(config.gamma, config.gae_lambda)
    obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])
    actions = rollout.actions.reshape(-1, rollout.actions.shape[-1])
    old_logprobs, old_values = rollout.logprobs.reshape(-1), rollout.values.reshape(-1)
    advantages, returns = advantages.reshape(-1), returns.reshape(-1)
    batch = obs.shape[0]
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0}
    updates = 0
    for _ in range(config.num_epochs):
        order = torch.randperm(batch, generator=generator)
        for index in order.tensor_split(config.num_minibatches):  # sizes differ by at most 1
            values = legacy_critic(model, obs[index])
            value_loss = clipped_value_loss(values, old_values[index], returns[index], config.value_clip_range)
            loss = config.value_coef * value_loss
            if update_actor:
                mean, log_std = legacy_distribution_params(model.actor, obs[index])
                logprobs = GaussianActor.log_prob(actions[index], mean, log_std)
                minibatch_advantages = whiten(advantages[index]) if config.normalize_advantage else advantages[index]
                policy = clipped_policy_loss(logprobs, old_logprobs[index], minibatch_advantages, config.clip_range)
                entropy = GaussianActor.entropy(log_std).mean()
                loss = loss + policy.loss - entropy_coef * entropy
                if config.lr_schedule == "adaptive":
                    _legacy_adapt_learning_rate(optimizer, policy.approx_kl.item(), config)
                totals["policy_loss"] += policy.loss.item()
                totals["entropy"] += entropy.item()
                totals["approx_kl"] += policy.approx_kl.item()
                totals["clip_fraction"] += policy.clip_fraction.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            totals["value_loss"] += value_loss.item()
            updates += 1
    stats = {k: v / updates for k, v in totals.items()}
    stats["returns_mean"] = float(returns.mean())
    stats["advantages_std"] = float(advantages.std())
    return stats


def _legacy_adapt_learning_rate(optimizer: torch.optim.Optimizer, kl: float, config) -> None:
    for group in optimizer.param_groups:
        if group.get("name") != "actor":
            continue
        if kl > 2.0 * config.target_kl:
            group["lr"] = max(group["lr"] / 1.5, config.lr_min)
        elif kl < 0.5 * config.target_kl:
            group["lr"] = min(group["lr"] * 1.5, config.lr_max)
