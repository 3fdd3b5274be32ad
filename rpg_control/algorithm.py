"""The PPO update (epochs × minibatches) on a finished rollout, and the per-step RPG reward.

All reward and loss math comes from :mod:`rpg`: :func:`rpg.reward.residual_reward` (eq. 8),
:func:`rpg.advantage.env_gae`, :func:`rpg.ppo.clipped_policy_loss` / ``clipped_value_loss``
(eq. 6-7). What is local here is the bookkeeping: which task reward a variant trains on,
minibatching, the entropy term of End/Repeat-Entropy PPO, gradient clipping, the adaptive
learning rate, and the critic warm-up of customization (actor frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rpg.advantage import env_gae, whiten
from rpg.ppo import clipped_policy_loss, clipped_value_loss
from rpg.reward import RewardCoefficients, residual_reward
from rpg_control.actor_critic import ActorCritic, GaussianActor


def task_reward(kind: str, basic: torch.Tensor, addon: torch.Tensor) -> torch.Tensor:
    """The r_R slot of eq. 8 for a variant: r (basic task), r + r_R (full policy) or r_R (customization)."""
    if kind == "basic":
        return basic
    if kind == "full":
        return basic + addon
    if kind == "addon":
        return addon
    raise ValueError(f"unknown task reward kind {kind!r}")


def rpg_step_reward(
    kind: str,
    basic: torch.Tensor,
    addon: torch.Tensor,
    policy_logprob: torch.Tensor,
    prior_logprob: torch.Tensor | None,
    coefficients: RewardCoefficients,
    reward_scale: float = 1.0,
) -> torch.Tensor:
    """Per-step reward the advantage is computed on: scale · (r_task + ω'·log π_prior − α̂·log πθ)."""
    return reward_scale * residual_reward(task_reward(kind, basic, addon), policy_logprob, prior_logprob, coefficients)


@dataclass
class Rollout:
    """One rollout, time-major [T, N] (obs [T, N, obs_dim] already normalized)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor  # the RPG reward of rpg_step_reward
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor  # V(final obs), read where truncated & ~terminated
    last_values: torch.Tensor  # [N]

    def advantages(self, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return env_gae(self.rewards, self.values, self.last_values, self.terminated, self.truncated, gamma, lam, self.final_values)


def ppo_update(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    config,
    entropy_coef: float,
    update_actor: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Run ``num_epochs`` × ``num_minibatches`` clipped-PPO steps; return mean statistics.

    With ``update_actor=False`` (critic warm-up) only the value loss is optimized: actor
    parameters get no gradient, so Adam leaves them exactly as they are.
    With ``config.lr_schedule == "adaptive"`` the actor's learning rate is multiplied/divided by
    1.5 when the approximate KL leaves [target/2, 2·target] (rsl_rl's rule); the critic keeps
    ``config.learning_rate``.
    """
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
            values = model.critic(obs[index])
            value_loss = clipped_value_loss(values, old_values[index], returns[index], config.value_clip_range)
            loss = config.value_coef * value_loss
            if update_actor:
                mean, log_std = model.actor.distribution_params(obs[index])
                logprobs = GaussianActor.log_prob(actions[index], mean, log_std)
                minibatch_advantages = whiten(advantages[index]) if config.normalize_advantage else advantages[index]
                policy = clipped_policy_loss(logprobs, old_logprobs[index], minibatch_advantages, config.clip_range)
                entropy = GaussianActor.entropy(log_std).mean()
                loss = loss + policy.loss - entropy_coef * entropy
                if config.lr_schedule == "adaptive":
                    _adapt_learning_rate(optimizer, policy.approx_kl.item(), config)
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


def make_optimizer(model: ActorCritic, config) -> torch.optim.Adam:
    """Adam with two parameter groups: the actor's (its lr follows the schedule) and the critic's.

    The adaptive schedule reacts to the policy's KL only, so it moves the actor's lr alone: a
    policy step that overshoots must not also stall the critic's regression.
    """
    return torch.optim.Adam(
        [
            {"params": list(model.actor.parameters()), "name": "actor"},
            {"params": list(model.critic.parameters()), "name": "critic"},
        ],
        lr=config.learning_rate,
        eps=1e-5,
        foreach=True,
    )


def _adapt_learning_rate(optimizer: torch.optim.Optimizer, kl: float, config) -> None:
    for group in optimizer.param_groups:
        if group.get("name") != "actor":
            continue
        if kl > 2.0 * config.target_kl:
            group["lr"] = max(group["lr"] / 1.5, config.lr_min)
        elif kl < 0.5 * config.target_kl:
            group["lr"] = min(group["lr"] * 1.5, config.lr_max)
