"""The PPO update (epochs × minibatches) on a finished rollout, and the per-step RPG reward.

All reward and loss math comes from :mod:`rpg`: :func:`rpg.reward.residual_reward` (eq. 8),
:func:`rpg.advantage.env_gae`, :func:`rpg.ppo.clipped_policy_loss` / ``clipped_value_loss``
(eq. 6-7) and their gradients (``clipped_policy_loss_and_grad`` / ``clipped_value_loss_and_grad``).
What is local here is the bookkeeping: which task reward a variant trains on, minibatching, the
entropy term of End/Repeat-Entropy PPO, gradient clipping, the adaptive learning rate, and the
critic warm-up of customization (actor frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rpg.advantage import env_gae, whiten
from rpg.ppo import (
    clipped_policy_loss,
    clipped_policy_loss_and_grad,
    clipped_value_loss,
    clipped_value_loss_and_grad,
)
from rpg.reward import RewardCoefficients, residual_reward
from rpg_control.actor_critic import ActorCritic, GaussianActor, mlp_backward, mlp_forward_layers, mlp_parameters


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
        return env_gae(
            self.rewards, self.values, self.last_values, self.terminated, self.truncated, gamma, lam, self.final_values
        )


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

    The math is that of the frozen reference ``tests/control/legacy_ppo_update.py`` (same permutations, same
    minibatches, same losses and clipping); the work per minibatch is smaller: every per-sample
    tensor sits in one table gathered once per epoch (a minibatch is a contiguous slice of it),
    the loss's gradient is written out (:func:`_minibatch_gradient`: no autograd graph; autograd
    through :func:`_minibatch_loss` only for networks that are not ``mlp()`` stacks), the gradient
    norm is one ``_foreach_norm`` and statistics are read once per update.
    """
    advantages, returns = rollout.advantages(config.gamma, config.gae_lambda)
    table, obs_dim = _sample_table(rollout, advantages, returns)
    parameters = [p for p in model.parameters() if p.requires_grad]
    adaptive = update_actor and config.lr_schedule == "adaptive"
    nets = _mlp_stacks(model)
    # The written-out gradient overwrites one flat buffer every minibatch (each .grad a view of it):
    # no allocations, and the gradient norm is one reduction over it.
    flat_grad = None if nets is None else _gradient_buffer(model, nets, update_actor)
    stats: list[torch.Tensor] = []
    for _ in range(config.num_epochs):
        order = torch.randperm(table.shape[0], generator=generator)
        shuffled = table.index_select(0, order)
        for minibatch in shuffled.tensor_split(config.num_minibatches):  # sizes differ by at most 1
            if flat_grad is None:  # optimizer.zero_grad(set_to_none=True) without its profiling wrapper
                for p in parameters:
                    p.grad = None
            if nets is not None:  # the loss's gradient written out, no autograd graph
                policy_kl, stat = _minibatch_gradient(
                    model, nets, minibatch, obs_dim, config, entropy_coef, update_actor
                )
            else:
                loss, policy_kl, stat = _minibatch_loss(model, minibatch, obs_dim, config, entropy_coef, update_actor)
                loss.backward()
            if adaptive:
                _adapt_learning_rate(optimizer, policy_kl.item(), config)
            stats.append(stat)
            clip_grad_norm(parameters, config.max_grad_norm, flat_grad)
            optimizer.step()
    return _mean_statistics(stats, update_actor, advantages, returns)


def _sample_table(rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every per-sample tensor as one [T·N, columns] table: obs, action, old log-prob, old value, advantage,
    return (a minibatch is then one slice of it); and the observation width."""
    obs_dim, act_dim = rollout.obs.shape[-1], rollout.actions.shape[-1]
    columns = [
        rollout.obs.reshape(-1, obs_dim),
        rollout.actions.reshape(-1, act_dim),
        rollout.logprobs.reshape(-1, 1),
        rollout.values.reshape(-1, 1),
        advantages.reshape(-1, 1),
        returns.reshape(-1, 1),
    ]
    return torch.cat([c.to(torch.float32) for c in columns], dim=1), obs_dim


def _minibatch_loss(
    model: ActorCritic, minibatch: torch.Tensor, obs_dim: int, config, entropy_coef: float, update_actor: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One minibatch's loss (value loss, plus eq. 6-7's clipped policy loss and the entropy term when the
    actor trains), the policy's approximate KL (None in the critic warm-up), and its detached statistics."""
    a0 = minibatch.shape[1] - 4  # column of the old log-prob; old value, advantage, return follow
    obs = minibatch[:, :obs_dim]
    values = model.critic(obs)
    value_loss = clipped_value_loss(values, minibatch[:, a0 + 1], minibatch[:, a0 + 3], config.value_clip_range)
    loss = config.value_coef * value_loss
    if not update_actor:
        return loss, None, value_loss.detach()
    mean, log_std = model.actor.distribution_params(obs)
    logprobs = GaussianActor.log_prob(minibatch[:, obs_dim:a0], mean, log_std)
    minibatch_advantages = minibatch[:, a0 + 2]
    if config.normalize_advantage:
        minibatch_advantages = whiten(minibatch_advantages)
    policy = clipped_policy_loss(logprobs, minibatch[:, a0], minibatch_advantages, config.clip_range)
    entropy = GaussianActor.entropy(log_std).mean()
    loss = loss + policy.loss - entropy_coef * entropy
    detached = [policy.loss.detach(), value_loss.detach(), entropy.detach(), policy.approx_kl, policy.clip_fraction]
    return loss, policy.approx_kl, torch.stack(detached)


def _mlp_stacks(model: ActorCritic):
    """(actor, critic) as (activation, parameters) when both are ``mlp()`` stacks (the gradient can
    then be written out), else None."""
    actor, critic = mlp_parameters(model.actor.mean_net), mlp_parameters(model.critic.net)
    return None if actor is None or critic is None else (actor, critic)


def _gradient_buffer(model: ActorCritic, nets, update_actor: bool) -> torch.Tensor:
    """One flat tensor holding the gradient of every parameter the written-out gradient reaches
    (the critic's; the actor's and a global log σ's unless ``update_actor`` is False), each
    parameter's ``.grad`` a view of it in the parameter's own layout; the others get ``.grad = None``
    (Adam skips them)."""
    (_, actor_params), (_, critic_params) = nets
    reached = list(critic_params)
    if update_actor:
        reached += list(actor_params) + ([model.actor.log_std] if model.actor.std_type == "global" else [])
    reached = [p for p in reached if p.requires_grad]
    flat = torch.zeros(sum(p.numel() for p in reached), dtype=reached[0].dtype)
    for p in model.parameters():
        p.grad = None
    offset = 0
    for p in reached:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def _set_grads(params: tuple[torch.Tensor, ...], grads: list[torch.Tensor | None]) -> None:
    for p, g in zip(params, grads):
        if p.requires_grad and g is not p.grad:  # a preallocated .grad was written in place
            p.grad = g if g.stride() == p.stride() else g.contiguous()  # the layout Adam and autograd use


def _minibatch_gradient(
    model: ActorCritic, nets, minibatch: torch.Tensor, obs_dim: int, config, entropy_coef: float, update_actor: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The gradient of :func:`_minibatch_loss`'s loss, written out without autograd: stored in the
    ``.grad`` of every parameter the loss reaches; returns the approximate KL (None in the critic
    warm-up) and the detached statistics, as ``_minibatch_loss`` does.

    loss = c_V·L_V + L_clip − c_H·H (eq. 6-7): d/dV from :func:`rpg.ppo.clipped_value_loss_and_grad`;
    d/d log π from :func:`rpg.ppo.clipped_policy_loss_and_grad`, through the Gaussian log-density
    (:meth:`GaussianActor.log_prob_and_grads`) to μ and log σ; the entropy H = mean Σ_k log σ + const
    adds −c_H/B to each d/d log σ; then back through each MLP (:func:`mlp_backward`).
    """
    (actor_activation, actor_params), (critic_activation, critic_params) = nets
    a0 = minibatch.shape[1] - 4  # column of the old log-prob; old value, advantage, return follow
    obs = minibatch[:, :obs_dim]
    with torch.no_grad():
        critic_out = mlp_forward_layers(critic_activation, obs, critic_params)
        value_loss, d_values = clipped_value_loss_and_grad(
            critic_out[-1].squeeze(-1), minibatch[:, a0 + 1], minibatch[:, a0 + 3], config.value_clip_range
        )
        d_out = (config.value_coef * d_values).unsqueeze(-1)
        out = [p.grad for p in critic_params]
        _set_grads(critic_params, mlp_backward(critic_activation, obs, critic_params, critic_out, d_out, out=out)[0])
        if not update_actor:
            return None, value_loss
        actor_out = mlp_forward_layers(actor_activation, obs, actor_params)
        mean, log_std = model.actor.params_from_output(actor_out[-1])
        if model.actor.std_type == "global":  # [act_dim], broadcast: exp and entropy on one row, not B
            log_std = model.actor.log_std.detach()
        logprobs, d_mean, d_log_std = GaussianActor.log_prob_and_grads(minibatch[:, obs_dim:a0], mean, log_std)
        minibatch_advantages = minibatch[:, a0 + 2]
        if config.normalize_advantage:
            minibatch_advantages = whiten(minibatch_advantages)
        policy, d_logprobs = clipped_policy_loss_and_grad(
            logprobs, minibatch[:, a0], minibatch_advantages, config.clip_range
        )
        entropy = GaussianActor.entropy(log_std).mean()
        d_logprobs = d_logprobs.unsqueeze(-1)
        d_log_std = d_logprobs * d_log_std - entropy_coef / mean.shape[0]
        d_out = model.actor.output_grad(actor_out[-1], d_logprobs * d_mean, d_log_std)
        out = [p.grad for p in actor_params]
        _set_grads(actor_params, mlp_backward(actor_activation, obs, actor_params, actor_out, d_out, out=out)[0])
    stat = torch.stack([policy.loss, value_loss, entropy, policy.approx_kl, policy.clip_fraction])
    return policy.approx_kl, stat


def _mean_statistics(
    stats: list[torch.Tensor], update_actor: bool, advantages: torch.Tensor, returns: torch.Tensor
) -> dict[str, float]:
    names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
    if update_actor:
        result = dict(zip(names, torch.stack(stats).mean(0).tolist()))
    else:
        result = {name: 0.0 for name in names}
        result["value_loss"] = torch.stack(stats).mean().item()
    result["returns_mean"] = float(returns.mean())
    result["advantages_std"] = float(advantages.std())
    return result


def clip_grad_norm(
    parameters: list[torch.Tensor], max_norm: float, flat_grad: torch.Tensor | None = None
) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm), the same arithmetic in fewer calls: the
    per-tensor norms in one ``_foreach_norm``, the scale as a tensor for one ``_foreach_mul_``;
    a scale of 1 (the norm is within ``max_norm``) is skipped, multiplying by 1 being exact.
    ``flat_grad``: one tensor holding every gradient (see :func:`_gradient_buffer`): the scaling is
    then one multiply over it (bit-equal). The norm stays the norm of the per-tensor norms: one
    reduction over the flat buffer measured no faster, and its other rounding flips the adaptive
    lr's threshold tests against the reference update."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if coefficient.item() < 1.0:
        if flat_grad is not None:
            flat_grad.mul_(coefficient)
        else:
            torch._foreach_mul_(grads, coefficient)
    return total


def make_optimizer(model: ActorCritic, config) -> torch.optim.Adam:
    """Adam with two parameter groups: the actor's (its lr follows the schedule) and the critic's.

    The adaptive schedule reacts to the policy's KL only, so it moves the actor's lr alone: a
    policy step that overshoots must not also stall the critic's regression. torch's fused
    Adam (one C++ loop per group; the foreach Adam of the frozen reference update is ~3× slower).
    """
    return FusedAdam(
        [
            {"params": list(model.actor.parameters()), "name": "actor"},
            {"params": list(model.critic.parameters()), "name": "critic"},
        ],
        lr=config.learning_rate,
        eps=1e-5,
    )


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with a leaner ``step`` and that stays fused after loading a
    state saved by a ``foreach`` Adam (``load_state_dict`` otherwise takes the saved groups' flags).

    ``step`` makes the same ``torch._fused_adam_`` call as torch's (same kernel, same state, so
    bit-equal results) without its per-step bookkeeping, which on a CPU costs more than the kernel.
    Anything it does not cover (closures, hooks, amsgrad, maximize, tensor lr …) goes to torch's.
    """

    def __init__(self, params, **kwargs):
        super().__init__(params, fused=True, **kwargs)
        self._one = torch.ones(())  # a tensor operand: a Python scalar costs a conversion per step tensor
        self._lists: dict[int, tuple] = {}  # per group: the .grad objects seen, and step()'s lists

    def step(self, closure=None):
        if closure is not None or self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks:
            return super().step(closure)
        for group in self.param_groups:
            unsupported = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
            if (
                any(group.get(flag) for flag in unsupported)
                or not group["fused"]
                or isinstance(group["lr"], torch.Tensor)
            ):
                return super().step(closure)
        with torch.no_grad():
            for index, group in enumerate(self.param_groups):
                params, grads, exp_avgs, exp_avg_sqs, steps = self._group_lists(index, group)
                if not params:
                    continue
                torch._foreach_add_(steps, self._one)
                beta1, beta2 = group["betas"]
                torch._fused_adam_(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
        return None

    def _group_lists(self, index: int, group: dict) -> tuple[list[torch.Tensor], ...]:
        """(params, grads, exp_avgs, exp_avg_sqs, steps) of a group's parameters that have a gradient,
        creating missing state. Cached while every ``.grad`` is the same tensor object as last step (the
        PPO update's preallocated gradients): the per-parameter Python costs more than the kernel."""
        current = [p.grad for p in group["params"]]
        cached = self._lists.get(index)
        if cached is not None and len(cached[0]) == len(current) and all(a is b for a, b in zip(cached[0], current)):
            return cached[1]
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        self._lists[index] = (current, (params, grads, exp_avgs, exp_avg_sqs, steps))
        return params, grads, exp_avgs, exp_avg_sqs, steps

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lists.clear()  # the state tensors were replaced
        for group in self.param_groups:
            group["foreach"], group["fused"] = None, True


def _adapt_learning_rate(optimizer: torch.optim.Optimizer, kl: float, config) -> None:
    for group in optimizer.param_groups:
        if group.get("name") != "actor":
            continue
        if kl > 2.0 * config.target_kl:
            group["lr"] = max(group["lr"] / 1.5, config.lr_min)
        elif kl < 0.5 * config.target_kl:
            group["lr"] = min(group["lr"] * 1.5, config.lr_max)
