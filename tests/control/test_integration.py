"""Integration (slow): a short Soft PPO run on HalfCheetah-v5 rises clearly above a random policy."""

import numpy as np
import pytest

pytest.importorskip("mujoco")

from rpg_control.config import load_config  # noqa: E402
from rpg_control.envs import make_vec_env  # noqa: E402
from rpg_control.evaluate import evaluate  # noqa: E402
from rpg_control.train import train  # noqa: E402


def random_policy_return(env: str, episodes: int, seed: int) -> float:
    """Mean basic return of uniformly random actions over full episodes."""
    envs = make_vec_env(env, episodes, "native")
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    returns, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not done.all():
        out = envs.step(rng.uniform(envs.action_low, envs.action_high, size=(episodes, envs.spec.act_dim)))
        returns += np.where(done, 0.0, out.reward)
        done |= out.terminated | out.truncated
    return float(returns.mean())


@pytest.mark.slow
def test_short_soft_ppo_run_beats_a_random_policy(tmp_path):
    config = load_config(
        "halfcheetah",
        "soft",
        {
            "total_steps": 81920,
            "num_envs": 16,
            "steps_per_env": 64,
            "num_minibatches": 4,
            "checkpoint_every": 20,
            "seed": 1,
        },
    )
    train(config, tmp_path, progress=False)
    trained = evaluate(tmp_path / "checkpoints" / "last.pt", episodes=2, seed=5)
    random_return = random_policy_return("halfcheetah", episodes=2, seed=5)
    # Random actions pay ≈ 0.1·6·E[u²]·1000 ≈ 200 in control cost and barely move (≈ −280).
    assert random_return < -150
    assert trained["basic"]["mean"] > random_return + 400, (trained["basic"], random_return)
    assert trained["basic"]["mean"] > 100  # it runs forward, it does not just stand still
