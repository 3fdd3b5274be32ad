"""MuJoCo tasks of the paper (App. D-1) as vectorized environments with add-on rewards.

Every env step returns, per environment:

* ``reward``       the basic reward r: the gymnasium v5 env's own reward;
* ``addon_reward`` the add-on reward r_R of the protocol (docs/mujoco.md), computed from simulator state (qpos);
* ``addon_metric`` the per-step quantity whose episode mean the paper reports (|θ|, z, v_y);
* ``final_obs``    the true last observation of the step (differs from ``obs`` where the env
  finished and was reset in the same step: the truncation bootstrap needs V(final_obs)).

Three backends with one interface:

* ``gymnasium`` — ``gym.vector.SyncVectorEnv`` over ``gym.make(<Env>-v5)`` with
  ``AutoresetMode.SAME_STEP``; add-on terms come from a wrapper that reads ``data.qpos``, and
  on the terminal step they are read from ``final_info``.
* ``native`` — the same v5 model files, stepped with the ``mujoco`` package directly in one
  loop over ``MjData`` (no wrappers, no per-env dict/info traffic). It reproduces gymnasium's
  v5 dynamics, rewards, terminations and even its reset RNG stream bit for bit
  (``tests/control/test_envs.py`` checks this), and is the default because it is faster.
* ``envpool`` — optional: envpool's C++ ports of the v4 tasks (see :class:`EnvpoolVecEnv`).

v5 vs v3 (the paper's versions; v3 needs mujoco-py): HalfCheetah-v5 = v3. Hopper-v5 pays the
alive bonus only while healthy (v3 also paid it on the terminal step) — accepted. Ant-v5 is
used with ``include_cfrc_ext_in_observation=False`` (27 dims, as the paper) and
``contact_cost_weight=0``: under mujoco>=2 the v3 env never computed contact forces, so its
contact cost was 0, and the protocol's basic reward for Ant (docs/mujoco.md) has no contact term.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

__all__ = [
    "EnvSpec",
    "ENV_SPECS",
    "StepOutput",
    "VecEnv",
    "GymnasiumVecEnv",
    "NativeMujocoVecEnv",
    "EnvpoolVecEnv",
    "make_vec_env",
    "get_env_spec",
]

BACKENDS = ("native", "gymnasium", "envpool")


# Each add-on function maps the tracked coordinates before/after a step (see EnvSpec.tracked)
# to (r_R, metric).


def _halfcheetah_addon(qpos_before: np.ndarray, qpos_after: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """r_R = −|θ_bthigh| with θ_bthigh = qpos[3] (hind thigh); metric |θ|."""
    angle = np.abs(qpos_after[..., 3])
    return -angle, angle


def _hopper_addon(qpos_before: np.ndarray, qpos_after: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """r_R = z, the torso height qpos[1]; metric z."""
    height = qpos_after[..., 1].copy()
    return height, height


def _ant_addon(xy_before: np.ndarray, xy_after: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """r_R = Δy/Δt of the torso body (its ``xpos``, as Ant-v5 measures velocity); metric v_y."""
    velocity_y = (xy_after[..., 1] - xy_before[..., 1]) / dt
    return velocity_y, velocity_y


@dataclass(frozen=True)
class EnvSpec:
    """One task: the gymnasium id, the kwargs we fix, its sizes and its add-on reward."""

    name: str
    gym_id: str
    obs_dim: int
    act_dim: int
    addon: Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]
    addon_metric_name: str
    gym_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int = 1000
    # What the forward velocity and the add-on read: "qpos" (x = qpos[0]) or "torso_xpos" (the
    # torso body's world x, y; Ant-v5 uses it, and it lags qpos by one substep).
    tracked_source: str = "qpos"

    def tracked(self, data) -> np.ndarray:
        """Copy of the tracked coordinates of one ``MjData``; index 0 is always the forward x."""
        if self.tracked_source == "torso_xpos":
            return data.xpos[1, :2].copy()
        return data.qpos.copy()


ENV_SPECS: dict[str, EnvSpec] = {
    "halfcheetah": EnvSpec("halfcheetah", "HalfCheetah-v5", 17, 6, _halfcheetah_addon, "mean |theta_bthigh|"),
    "hopper": EnvSpec("hopper", "Hopper-v5", 11, 3, _hopper_addon, "mean z"),
    "ant": EnvSpec(
        "ant",
        "Ant-v5",
        27,
        8,
        _ant_addon,
        "mean v_y",
        gym_kwargs={"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0},
        tracked_source="torso_xpos",
    ),
}


def get_env_spec(name: str) -> EnvSpec:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ENV_SPECS:
        raise ValueError(f"unknown env {name!r}; choose one of: {', '.join(ENV_SPECS)}")
    return ENV_SPECS[key]


class StepOutput(NamedTuple):
    obs: np.ndarray  # [N, obs_dim] observation to act on next (a reset obs where the env finished)
    reward: np.ndarray  # [N] basic reward r
    addon_reward: np.ndarray  # [N] r_R
    addon_metric: np.ndarray  # [N]
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool (time limit)
    final_obs: np.ndarray  # [N, obs_dim] true successor observation of this step


class VecEnv:
    """Interface shared by both backends (numpy in, numpy out, float64 observations)."""

    spec: EnvSpec
    num_envs: int
    action_low: np.ndarray
    action_high: np.ndarray

    def reset(self, seed: int | None = None) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> StepOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# gymnasium backend


def _gym_env_factory(spec: EnvSpec, env_kwargs: dict):
    import gymnasium as gym

    class AddonRewardWrapper(gym.Wrapper):
        """Puts r_R and its metric, computed from ``data.qpos``, into ``info``."""

        def step(self, action):
            data = self.env.unwrapped.data
            before = spec.tracked(data)
            obs, reward, terminated, truncated, info = self.env.step(action)
            addon, metric = spec.addon(before, spec.tracked(data), self.env.unwrapped.dt)
            info["addon_reward"] = float(addon)
            info["addon_metric"] = float(metric)
            return obs, reward, terminated, truncated, info

    def make():
        kwargs = {**spec.gym_kwargs, **env_kwargs}
        return AddonRewardWrapper(gym.make(spec.gym_id, max_episode_steps=spec.max_episode_steps, **kwargs))

    return make


class GymnasiumVecEnv(VecEnv):
    """``SyncVectorEnv`` with same-step autoreset: terminal add-on terms come from ``final_info``."""

    def __init__(self, spec: EnvSpec, num_envs: int, env_kwargs: dict | None = None):
        import gymnasium as gym

        self.spec = spec
        self.num_envs = num_envs
        self.envs = gym.vector.SyncVectorEnv(
            [_gym_env_factory(spec, env_kwargs or {}) for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        space = self.envs.single_action_space
        self.action_low, self.action_high = space.low.astype(np.float64), space.high.astype(np.float64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self.envs.reset(seed=seed)
        return np.asarray(obs, dtype=np.float64)

    def step(self, actions: np.ndarray) -> StepOutput:
        obs, reward, terminated, truncated, info = self.envs.step(np.asarray(actions))
        obs = np.asarray(obs, dtype=np.float64)
        addon = np.array(info.get("addon_reward", np.zeros(self.num_envs)), dtype=np.float64)
        metric = np.array(info.get("addon_metric", np.zeros(self.num_envs)), dtype=np.float64)
        final_obs = obs.copy()
        done = np.logical_or(terminated, truncated)
        if done.any():
            final_info = info["final_info"]
            for i in np.flatnonzero(done):
                final_obs[i] = info["final_obs"][i]
                addon[i] = final_info["addon_reward"][i]
                metric[i] = final_info["addon_metric"][i]
        return StepOutput(
            obs,
            np.asarray(reward, np.float64),
            addon,
            metric,
            np.asarray(terminated, bool),
            np.asarray(truncated, bool),
            final_obs,
        )

    def close(self) -> None:
        self.envs.close()


# ---------------------------------------------------------------------------------------------
# native backend: the gymnasium v5 tasks on the mujoco package directly


@dataclass(frozen=True)
class _TaskRules:
    """The v5 reward/termination/observation rules of one task (gymnasium's defaults)."""

    frame_skip: int
    ctrl_cost_weight: float
    reset_noise_scale: float
    qvel_noise: str  # "normal" (scaled standard normal) or "uniform"
    skip_qpos: int  # leading qpos entries excluded from the observation
    healthy_reward: float = 0.0
    clip_qvel_obs: float | None = None
    contact_cost_weight: float = 0.0


def _task_rules(spec: EnvSpec, env_kwargs: dict) -> _TaskRules:
    kwargs = {**spec.gym_kwargs, **env_kwargs}
    supported = {"ant": {"include_cfrc_ext_in_observation", "contact_cost_weight"}}.get(spec.name, set())
    unsupported = set(kwargs) - supported
    if unsupported or kwargs.get("include_cfrc_ext_in_observation", False):
        raise ValueError(
            f"the native backend supports no env_kwargs {sorted(unsupported) or kwargs} for {spec.name}; "
            "use backend: gymnasium"
        )
    if spec.name == "halfcheetah":
        return _TaskRules(frame_skip=5, ctrl_cost_weight=0.1, reset_noise_scale=0.1, qvel_noise="normal", skip_qpos=1)
    if spec.name == "hopper":
        return _TaskRules(4, 1e-3, 5e-3, "uniform", 1, healthy_reward=1.0, clip_qvel_obs=10.0)
    return _TaskRules(
        5, 0.5, 0.1, "normal", 2, healthy_reward=1.0, contact_cost_weight=float(kwargs.get("contact_cost_weight", 5e-4))
    )


def _model_path(spec: EnvSpec) -> str:
    import gymnasium.envs.mujoco as gym_mujoco

    xml = {"halfcheetah": "half_cheetah.xml", "hopper": "hopper.xml", "ant": "ant.xml"}[spec.name]
    return os.path.join(os.path.dirname(gym_mujoco.__file__), "assets", xml)


class NativeMujocoVecEnv(VecEnv):
    """N copies of a v5 task stepped with ``mujoco.mj_step`` in one Python loop.

    Mirrors gymnasium exactly: ``mj_resetData`` + noisy ``qpos/qvel`` + ``mj_forward`` on reset,
    ``ctrl = action`` then ``mj_step(nstep=frame_skip)`` on step, the v5 reward and health
    rules, a 1000-step time limit, and env ``i`` seeded with ``seed + i`` like ``SyncVectorEnv``.
    """

    def __init__(self, spec: EnvSpec, num_envs: int, env_kwargs: dict | None = None):
        import mujoco

        self._mujoco = mujoco
        self.spec = spec
        self.num_envs = num_envs
        self.rules = _task_rules(spec, env_kwargs or {})
        self.model = mujoco.MjModel.from_xml_path(_model_path(spec))
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.dt = self.model.opt.timestep * self.rules.frame_skip
        self.init_qpos = self.datas[0].qpos.copy()
        self.init_qvel = self.datas[0].qvel.copy()
        low, high = self.model.actuator_ctrlrange.astype(np.float32).T  # gymnasium's Box is float32
        self.action_low, self.action_high = low.astype(np.float64), high.astype(np.float64)
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        nq, nv = self.model.nq, self.model.nv
        ntracked = len(spec.tracked(self.datas[0]))
        self._tracked_before = np.empty((num_envs, ntracked))
        self._tracked_after = np.empty((num_envs, ntracked))
        self._qpos_after = np.empty((num_envs, nq))
        self._qvel_after = np.empty((num_envs, nv))
        self._contact_cost = np.zeros(num_envs)

    # -- helpers ------------------------------------------------------------------------------
    def _reset_one(self, i: int) -> None:
        mujoco, data, rng, rules = self._mujoco, self.datas[i], self.rngs[i], self.rules
        mujoco.mj_resetData(self.model, data)
        scale = rules.reset_noise_scale
        qpos = self.init_qpos + rng.uniform(low=-scale, high=scale, size=self.model.nq)
        if rules.qvel_noise == "normal":
            qvel = self.init_qvel + scale * rng.standard_normal(self.model.nv)
        else:
            qvel = self.init_qvel + rng.uniform(low=-scale, high=scale, size=self.model.nv)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(self.model, data)
        self.elapsed[i] = 0

    def _observe(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        position = qpos[..., self.rules.skip_qpos :]
        if self.rules.clip_qvel_obs is not None:
            qvel = np.clip(qvel, -self.rules.clip_qvel_obs, self.rules.clip_qvel_obs)
        return np.concatenate([position, qvel], axis=-1)

    def _healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        if self.spec.name == "hopper":  # v5: state[2:] in (−100, 100), z > 0.7, |angle| < 0.2
            state = np.concatenate([qpos, qvel], axis=-1)[:, 2:]
            ok_state = np.all((state > -100.0) & (state < 100.0), axis=-1)
            z, angle = qpos[:, 1], qpos[:, 2]
            return ok_state & (z > 0.7) & (z < np.inf) & (angle > -0.2) & (angle < 0.2)
        if self.spec.name == "ant":  # v5: finite state and 0.2 <= z <= 1.0
            finite = np.isfinite(np.concatenate([qpos, qvel], axis=-1)).all(axis=-1)
            return finite & (qpos[:, 2] >= 0.2) & (qpos[:, 2] <= 1.0)
        return np.ones(len(qpos), dtype=bool)

    # -- interface ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        for i in range(self.num_envs):
            self.rngs[i] = np.random.default_rng(None if seed is None else seed + i)
            self._reset_one(i)
        qpos = np.stack([d.qpos for d in self.datas])
        qvel = np.stack([d.qvel for d in self.datas])
        return self._observe(qpos, qvel)

    def step(self, actions: np.ndarray) -> StepOutput:
        mujoco, model, rules = self._mujoco, self.model, self.rules
        actions = np.asarray(actions).reshape(self.num_envs, -1)
        if actions.dtype not in (np.float32, np.float64):
            actions = actions.astype(np.float64)
        for i, data in enumerate(self.datas):
            self._tracked_before[i] = self.spec.tracked(data)
            data.ctrl[:] = actions[i]
            mujoco.mj_step(model, data, nstep=rules.frame_skip)
            if rules.contact_cost_weight:
                mujoco.mj_rnePostConstraint(model, data)  # fills cfrc_ext (state untouched)
                self._contact_cost[i] = rules.contact_cost_weight * np.sum(np.square(np.clip(data.cfrc_ext, -1.0, 1.0)))
            self._tracked_after[i] = self.spec.tracked(data)
            self._qpos_after[i] = data.qpos
            self._qvel_after[i] = data.qvel
        qpos, qvel = self._qpos_after, self._qvel_after
        x_velocity = (self._tracked_after[:, 0] - self._tracked_before[:, 0]) / self.dt
        healthy = self._healthy(qpos, qvel)
        # In the actions' own dtype, as gymnasium computes it (float32 actions → float32 cost).
        ctrl_cost = rules.ctrl_cost_weight * np.sum(np.square(actions), axis=-1)
        reward = x_velocity + rules.healthy_reward * healthy - ctrl_cost - self._contact_cost
        addon, metric = self.spec.addon(self._tracked_before, self._tracked_after, self.dt)
        terminated = ~healthy if rules.healthy_reward else np.zeros(self.num_envs, dtype=bool)
        self.elapsed += 1
        truncated = self.elapsed >= self.spec.max_episode_steps
        final_obs = self._observe(qpos, qvel)
        obs = final_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            self._reset_one(i)
            obs[i] = self._observe(self.datas[i].qpos, self.datas[i].qvel)
        # Like gymnasium's TimeLimit, a step that terminates on the time limit is also truncated.
        return StepOutput(
            obs,
            reward,
            np.asarray(addon, np.float64).copy(),
            np.asarray(metric, np.float64).copy(),
            terminated,
            truncated,
            final_obs,
        )


# ---------------------------------------------------------------------------------------------
# envpool backend (optional extra): C++ ports of the v4 tasks


class EnvpoolVecEnv(VecEnv):
    """envpool's ``HalfCheetah-v4`` / ``Hopper-v4`` / ``Ant-v4`` (``use_contact_force=False``).

    Not bit-identical to v5: envpool bundles its own MuJoCo build and ports v4 (Hopper-v4 pays the
    alive bonus on the terminal step too, like v3). envpool resets a finished env on the *next*
    ``step`` call; to keep this module's same-step contract, finished envs are stepped once more
    right away through envpool's partial ``step(action, env_id)``, which performs exactly that reset.
    Add-on terms come from the final observation (HalfCheetah obs[2] = qpos[3], Hopper obs[0] =
    qpos[1] = z) or, for Ant, from envpool's Δy/Δt of the torso (``info["y_velocity"]``).
    """

    TASKS = {
        "halfcheetah": ("HalfCheetah-v4", {}),
        "hopper": ("Hopper-v4", {}),
        "ant": ("Ant-v4", {"use_contact_force": False}),
    }

    def __init__(self, spec: EnvSpec, num_envs: int, env_kwargs: dict | None = None):
        try:
            import envpool
        except ImportError as error:
            raise ValueError("backend envpool needs the envpool package: pip install 'rpg[envpool]'") from error
        if env_kwargs:
            raise ValueError(f"the envpool backend takes no env_kwargs, got {sorted(env_kwargs)}")
        self._envpool = envpool
        self.spec = spec
        self.num_envs = num_envs
        self.task_id, self.task_kwargs = self.TASKS[spec.name]
        self.pool = None
        self.action_low = -np.ones(spec.act_dim)
        self.action_high = np.ones(spec.act_dim)

    def reset(self, seed: int | None = None) -> np.ndarray:
        # envpool seeds at construction: a seeded reset builds a fresh pool.
        seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31) if seed is None else seed
        self.pool = self._envpool.make_gymnasium(
            self.task_id, num_envs=self.num_envs, batch_size=self.num_envs, seed=seed, num_threads=1, **self.task_kwargs
        )
        obs, _ = self.pool.reset()
        return np.asarray(obs, dtype=np.float64)

    def step(self, actions: np.ndarray) -> StepOutput:
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        obs, reward, terminated, truncated, info = self.pool.step(actions, np.arange(self.num_envs))
        obs = np.asarray(obs, dtype=np.float64)
        final_obs = obs.copy()
        if self.spec.name == "halfcheetah":
            metric = np.abs(final_obs[:, 2])
            addon = -metric
        elif self.spec.name == "hopper":
            addon = metric = final_obs[:, 0].copy()
        else:
            addon = metric = np.asarray(info["y_velocity"], dtype=np.float64).copy()
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            reset_obs, *_, reset_info = self.pool.step(np.zeros((len(done), self.spec.act_dim)), done)
            obs[np.asarray(reset_info["env_id"])] = reset_obs
        return StepOutput(obs, np.asarray(reward, np.float64), addon, metric, terminated, truncated, final_obs)


def make_vec_env(env: str, num_envs: int, backend: str = "native", env_kwargs: dict | None = None) -> VecEnv:
    """Build ``num_envs`` copies of a task on a backend (``native``, ``gymnasium`` or ``envpool``)."""
    spec = get_env_spec(env)
    if backend == "native":
        return NativeMujocoVecEnv(spec, num_envs, env_kwargs)
    if backend == "gymnasium":
        return GymnasiumVecEnv(spec, num_envs, env_kwargs)
    if backend == "envpool":
        return EnvpoolVecEnv(spec, num_envs, env_kwargs)
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
