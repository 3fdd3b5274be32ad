"""MuJoCo tasks: sizes, add-on rewards on known states, and the native backend vs gymnasium v5."""

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")

from rpg_control.envs import ENV_SPECS, get_env_spec, make_vec_env  # noqa: E402


@pytest.mark.parametrize("name, sizes", [("halfcheetah", (17, 6)), ("hopper", (11, 3)), ("ant", (27, 8))])
@pytest.mark.parametrize("backend", ["native", "gymnasium"])
def test_observation_and_action_sizes_are_the_papers(name, sizes, backend):
    envs = make_vec_env(name, 2, backend)
    obs = envs.reset(seed=0)
    assert obs.shape == (2, sizes[0])
    assert envs.action_low.shape == (sizes[1],) and (ENV_SPECS[name].obs_dim, ENV_SPECS[name].act_dim) == sizes
    envs.close()


def test_addon_rewards_equal_their_definitions_on_known_states():
    before = np.zeros(9)
    after = np.array([5.0, 0.3, 0.1, -0.7, 0.2, 0.0, 0.4, 0.0, 0.0])  # HalfCheetah qpos, bthigh = −0.7
    addon, metric = get_env_spec("halfcheetah").addon(before, after, 0.05)
    assert addon == -0.7 and metric == 0.7  # −|θ|, |θ|

    hopper_after = np.array([1.0, 1.37, 0.05, 0.0, 0.0, 0.0])  # z = qpos[1]
    addon, metric = get_env_spec("hopper").addon(np.zeros(6), hopper_after, 0.008)
    assert addon == 1.37 and metric == 1.37

    xy_before, xy_after = np.array([2.0, -1.0]), np.array([2.1, -0.7])  # torso (x, y)
    addon, metric = get_env_spec("ant").addon(xy_before, xy_after, 0.05)
    assert addon == pytest.approx(0.3 / 0.05, rel=1e-12) and metric == addon


def _steps_with_random_actions(envs, count, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        actions = rng.uniform(-1.0, 1.0, size=(envs.num_envs, envs.spec.act_dim)).astype(np.float32)
        yield envs.step(actions)


@pytest.mark.parametrize("name, steps", [("halfcheetah", 1010), ("hopper", 300), ("ant", 120)])
def test_native_backend_reproduces_gymnasium_v5_bit_for_bit(name, steps):
    """Same seeds and actions: identical obs, rewards, add-ons, terminations and resets (incl. autoreset)."""
    native, gym_envs = make_vec_env(name, 3, "native"), make_vec_env(name, 3, "gymnasium")
    assert np.array_equal(native.reset(seed=11), gym_envs.reset(seed=11))
    finished = 0
    for a, b in zip(_steps_with_random_actions(native, steps), _steps_with_random_actions(gym_envs, steps)):
        for field in a._fields:
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        finished += int((a.terminated | a.truncated).sum())
    assert finished > 0  # the comparison covered episode ends and same-step resets
    gym_envs.close()


@pytest.mark.parametrize("backend", ["native", "gymnasium"])
def test_addon_on_the_terminal_step_comes_from_the_final_state(backend):
    """Hopper falls with random actions: on each terminal step r_R = z of the final state, not the reset one.

    The observation omits x, so obs[0] is qpos[1] = z; the final observation carries the final state.
    """
    envs = make_vec_env("hopper", 4, backend)
    envs.reset(seed=3)
    terminal_steps = 0
    for out in _steps_with_random_actions(envs, 200, seed=1):
        np.testing.assert_array_equal(out.addon_reward, out.final_obs[:, 0])
        done = out.terminated
        terminal_steps += int(done.sum())
        if done.any():
            assert not np.array_equal(out.obs[done], out.final_obs[done])
    assert terminal_steps > 0
    envs.close()


def test_halfcheetah_addon_matches_final_observation_through_time_limit():
    """HalfCheetah's obs[2] is qpos[3]: r_R = −|obs_final[2]| on every step, the truncating one included."""
    envs = make_vec_env("halfcheetah", 2, "gymnasium")
    envs.reset(seed=0)
    truncations = 0
    for out in _steps_with_random_actions(envs, 1000):
        np.testing.assert_array_equal(out.addon_reward, -np.abs(out.final_obs[:, 2]))
        truncations += int(out.truncated.sum())
    assert truncations == 2
    envs.close()


def test_unknown_env_and_backend_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown env 'walker'"):
        get_env_spec("walker")
    with pytest.raises(ValueError, match="unknown backend"):
        make_vec_env("hopper", 1, "envpool-cuda")


@pytest.mark.parametrize("name", ["halfcheetah", "hopper", "ant"])
def test_envpool_backend_keeps_the_same_step_contract(name):
    """Optional envpool backend: paper sizes, add-on from the final state, finished envs reset in the same step."""
    pytest.importorskip("envpool")
    envs = make_vec_env(name, 3, "envpool")
    obs = envs.reset(seed=2)
    assert obs.shape == (3, ENV_SPECS[name].obs_dim)
    lengths, finished = np.zeros(3, dtype=int), 0
    for out in _steps_with_random_actions(envs, 1001 if name == "halfcheetah" else 150):
        lengths += 1
        if name == "halfcheetah":
            np.testing.assert_array_equal(out.addon_reward, -np.abs(out.final_obs[:, 2]))
        elif name == "hopper":
            np.testing.assert_array_equal(out.addon_reward, out.final_obs[:, 0])
        done = out.terminated | out.truncated
        if done.any():
            assert not np.array_equal(out.obs[done], out.final_obs[done])  # a fresh episode's first obs
            np.testing.assert_array_equal(out.obs[~done], out.final_obs[~done])
            assert (lengths[out.truncated] == 1000).all()
            finished += int(done.sum())
            lengths[done] = 0
    assert finished > 0
