"""Rollout collection: run the policy in the vectorized envs for one iteration and fill the buffer.

Training (:func:`collect_rollout`) and evaluation (``rpg_control.evaluate``) share how the policy
sees an observation (:func:`policy_input`: normalized or raw) and how its actions are clipped to
the action space (:class:`ActionBounds`).
"""

from __future__ import annotations

import numpy as np
import torch

from rpg_control.actor_critic import ActorCritic, ObservationNormalizer
from rpg_control.checkpoint import PriorPolicy
from rpg_control.run_state import TrainState
from rpg_control.storage import RolloutBuffer
from rpg_control.train_log import EpisodeStats


class ActionBounds:
    """The envs' box action space; the Gaussian policy's samples are clipped into it before stepping."""

    def __init__(self, envs):
        self.low = torch.as_tensor(envs.action_low, dtype=torch.float32)
        self.high = torch.as_tensor(envs.action_high, dtype=torch.float32)

    def clip(self, actions: torch.Tensor) -> np.ndarray:
        return torch.clamp(actions, self.low, self.high).numpy()


def policy_input(normalizer: ObservationNormalizer, raw_obs: torch.Tensor, normalize: bool) -> torch.Tensor:
    """The observation the actor and critic see: normalized with running statistics, or raw."""
    return normalizer(raw_obs) if normalize else raw_obs


@torch.no_grad()
def critic_values(model: ActorCritic, normalizer: ObservationNormalizer, obs, normalize: bool) -> torch.Tensor:
    """V(s) of raw env observations ``obs`` (bootstrap values of the last and of time-limit-cut states)."""
    return model.critic(policy_input(normalizer, torch.as_tensor(obs, dtype=torch.float32), normalize))


def collect_rollout(
    envs,
    obs: np.ndarray,
    state: TrainState,
    buffer: RolloutBuffer,
    episodes: EpisodeStats,
    bounds: ActionBounds,
    normalize_obs: bool,
    prior: PriorPolicy | None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Step every env ``buffer.steps`` times from ``obs``; return the next observations and their V(s).

    ``prior``: the π_prior whose log-probabilities eq. 8 needs (None when the reward does not use it).
    The observation normalizer learns from what it sees unless ``state.normalizer_frozen``.
    """
    model, normalizer = state.model, state.normalizer
    for t in range(buffer.steps):
        raw_obs = torch.as_tensor(obs, dtype=torch.float32)
        if normalize_obs and not state.normalizer_frozen:
            normalizer.update(raw_obs)
        observed = policy_input(normalizer, raw_obs, normalize_obs)
        with torch.no_grad():
            actions, logprobs = model.actor.sample(observed)
            buffer.values[t] = model.critic(observed)
            if prior is not None:
                buffer.prior_logprobs[t] = prior.log_prob(raw_obs, actions)
        out = envs.step(bounds.clip(actions))
        buffer.obs[t], buffer.actions[t], buffer.logprobs[t] = observed, actions, logprobs
        buffer.basic[t] = torch.from_numpy(out.reward)
        buffer.addon[t] = torch.from_numpy(out.addon_reward)
        buffer.terminated[t] = torch.from_numpy(out.terminated)
        buffer.truncated[t] = torch.from_numpy(out.truncated)
        cut = out.truncated & ~out.terminated
        if cut.any():  # bootstrap a time-limit cut from the true final observation
            final_values = critic_values(model, normalizer, out.final_obs[cut], normalize_obs)
            buffer.final_values[t, torch.from_numpy(cut)] = final_values
        episodes.add(out.reward, out.addon_reward, out.addon_metric, out.terminated | out.truncated)
        obs = out.obs
    return obs, critic_values(model, normalizer, obs, normalize_obs)
