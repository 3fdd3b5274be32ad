"""Rollout storage: the [T, N] tensors one iteration fills (T steps of N envs), reused every iteration.

Collection (``rpg_control.rollout``) writes one time step at a time; the update reads the whole
buffer as a :class:`rpg_control.algorithm.Rollout`, whose reward is the RPG reward of eq. 8
(r_R + ω'·log π_prior − α̂·log πθ), computed here from the stored rewards and log-probabilities.
"""

from __future__ import annotations

import torch

from rpg.reward import RewardCoefficients
from rpg_control.algorithm import Rollout, rpg_step_reward


class RolloutBuffer:
    """Time-major storage of one rollout; ``obs`` holds the observations the policy saw (normalized)."""

    def __init__(self, steps: int, num_envs: int, obs_dim: int, act_dim: int):
        T, N = steps, num_envs
        self.steps = steps
        self.obs = torch.zeros(T, N, obs_dim)
        self.actions = torch.zeros(T, N, act_dim)
        self.logprobs = torch.zeros(T, N)
        self.prior_logprobs = torch.zeros(T, N)  # log π_prior(a|s); stays 0 when the reward does not use it
        self.values = torch.zeros(T, N)
        self.basic = torch.zeros(T, N)  # r, the basic task reward
        self.addon = torch.zeros(T, N)  # r_R, the add-on task reward
        self.terminated = torch.zeros(T, N, dtype=torch.bool)
        self.truncated = torch.zeros(T, N, dtype=torch.bool)
        self.final_values = torch.zeros(T, N)  # V(final obs) of episodes cut by the time limit

    def rpg_rewards(self, kind: str, coefficients: RewardCoefficients, reward_scale: float) -> torch.Tensor:
        """The per-step reward of eq. 8 on the task reward ``kind`` (basic | full | addon)."""
        prior_logprobs = self.prior_logprobs if coefficients.needs_prior else None
        return rpg_step_reward(kind, self.basic, self.addon, self.logprobs, prior_logprobs, coefficients, reward_scale)

    def as_rollout(self, rewards: torch.Tensor, last_values: torch.Tensor) -> Rollout:
        """The stored rollout with ``rewards`` and V(s_T) of each env, ready for ``ppo_update``."""
        return Rollout(
            self.obs,
            self.actions,
            self.logprobs,
            self.values,
            rewards,
            self.terminated,
            self.truncated,
            self.final_values,
            last_values,
        )
