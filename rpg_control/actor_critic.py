"""Gaussian actor, value critic and the running observation normalizer.

The actor is N(μθ(s), σ²) with σ either one global, state-independent parameter vector (the
paper's default, Sec. IV-A) or a state-dependent head (Table III's ablation). ``log_prob`` is
the log *density* of the sampling distribution — the log πθ of the Soft/Residual reward (eq. 5,
eq. 8) for continuous actions. Actions are sampled unclipped; the env receives them clipped to
its bounds (the log-prob stays that of the sample).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str, out_gain: float) -> nn.Sequential:
    """MLP with orthogonal init (√2 hidden gain, ``out_gain`` on the output layer), zero biases."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        linear = nn.Linear(last, width)
        nn.init.orthogonal_(linear.weight, math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, _ACTIVATIONS[activation]()]
        last = width
    head = nn.Linear(last, out_dim)
    nn.init.orthogonal_(head.weight, out_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, init_std: float, std_type: str = "global"):
        super().__init__()
        self.std_type = std_type
        self.act_dim = act_dim
        if std_type == "global":
            self.mean_net = mlp(obs_dim, hidden, act_dim, activation, out_gain=0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        elif std_type == "state":
            self.mean_net = mlp(obs_dim, hidden, 2 * act_dim, activation, out_gain=0.01)
            with torch.no_grad():  # the log-std half starts at log(init_std)
                self.mean_net[-1].bias[act_dim:] = math.log(init_std)
        else:
            raise ValueError(f"unknown std_type {std_type!r}")

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), both [..., act_dim]."""
        out = self.mean_net(obs)
        if self.std_type == "global":
            return out, self.log_std.expand_as(out)
        mean, log_std = out.split(self.act_dim, dim=-1)
        return mean, log_std.clamp(-20.0, 2.0)

    @staticmethod
    def log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """log N(a; μ, σ²) summed over action dims (a density: the paper's log π for Gaussians)."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def entropy(log_std: torch.Tensor) -> torch.Tensor:
        """H of the diagonal Gaussian: Σ (log σ + ½ log 2πe)."""
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log πθ(action|obs)) from the sampling distribution."""
        mean, log_std = self.distribution_params(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        actions = mean + noise * torch.exp(log_std)
        return actions, self.log_prob(actions, mean, log_std)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class ActorCritic(nn.Module):
    """Separate actor and critic networks (customization re-initializes the critic only)."""

    def __init__(self, obs_dim: int, act_dim: int, actor_hidden, critic_hidden, activation: str, init_std: float, std_type: str):
        super().__init__()
        self.actor = GaussianActor(obs_dim, act_dim, list(actor_hidden), activation, init_std, std_type)
        self.critic = Critic(obs_dim, list(critic_hidden), activation)

    @classmethod
    def from_config(cls, config, obs_dim: int, act_dim: int) -> "ActorCritic":
        return cls(obs_dim, act_dim, config.actor_hidden, config.critic_hidden, config.activation, config.init_std, config.std_type)


class ObservationNormalizer(nn.Module):
    """Running mean/variance of observations (parallel-variance merge), clipped to ±``clip``.

    Kept as buffers so it lands in ``state_dict`` and checkpoints bit-exactly.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.reshape(-1, self.mean.numel()).to(torch.float64)
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.pow(2) * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        normalized = (obs.to(torch.float64) - self.mean) / torch.sqrt(self.var + self.eps)
        return normalized.clamp(-self.clip, self.clip).to(torch.float32)
