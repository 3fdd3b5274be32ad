"""End-to-end PPO training throughput on MuJoCo: rpg_control vs Stable-Baselines3, side by side.

For each env, at the same settings (rpg_control's YAML defaults for the env: number of envs,
steps per env, minibatches, epochs, actor/critic widths and activation, initial std, γ, λ,
clip range, value coefficient, gradient clip; observation normalization on in both), it runs
in fresh subprocesses, one after another, repeated ``--repeats`` times in alternation:

* ``rpg native``     — ``rpg_control.train.train`` on the native mujoco backend (the default);
* ``rpg gymnasium``  — the same trainer on gymnasium's SyncVectorEnv (the backend's share);
* ``rpg envpool``    — the same trainer on envpool's C++ v4 ports, one thread (if installed);
* ``sb3``            — ``stable_baselines3.PPO`` on a ``DummyVecEnv`` of the same gymnasium v5
  env with ``VecNormalize(norm_reward=False)``;
* ``raw simulator``  — ``mujoco.mj_step`` on one ``MjData`` per env with random controls, no
  policy, no Python env logic: the limit of env-steps/s on this machine;
* ``update alone``   — rpg_control's real PPO update (``rpg_control.algorithm.rpg_step_reward`` +
  ``ppo_update``: GAE, ``num_epochs`` × ``num_minibatches`` Adam steps with gradient clipping) of
  the same networks (``ActorCritic.from_config``) and optimizer (``make_optimizer``) on a
  synthetic rollout buffer of the right shapes (``steps_per_env`` × ``num_envs``), no env stepping;
  as many updates as a training run of ``--steps`` makes, after one untimed warm-up update;
* ``act alone``      — the policy forward for acting, on ``num_envs`` observations per step
  (``actor.sample`` + ``critic`` under ``no_grad``, as in the trainer's rollout), no env stepping.

Reported: env-steps/s (best of the repeats), ratios to SB3, the fraction of raw simulator speed
a training run reaches, and peak RSS of each process. A run's time is everything from building
its envs and model to the trained model (rollout + update; rpg also writes its checkpoints,
metrics and TensorBoard logs), not interpreter start-up or imports.

The machine's limit for a serial trainer at these settings is the rate of one that did nothing
but those three pieces, one after another, per env step:
``limit = 1 / (1/raw_sim + update_seconds_per_step + act_seconds_per_step)``. Reported for every
trainer: the fraction of that limit it reaches; and ``limit ÷ SB3``, the ceiling on any trainer's
speed-up over SB3 at equal settings on one core (no trainer that does the same math serially can
beat it). Every piece is timed in the same run, alternating with the trainers.

    OMP_NUM_THREADS=1 python benchmarks/control_throughput.py --steps 30000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _config(env: str, steps: int):
    from rpg_control.config import load_config

    # Soft PPO's per-step reward work is included; checkpoints only at the end (SB3 saves none).
    return load_config(env, "soft", {"total_steps": steps, "checkpoint_every": 10**9})


def run_rpg(env: str, steps: int, backend: str) -> dict:
    import torch

    torch.set_num_threads(1)
    # Import costs are not training time (SB3's worker imports gymnasium's MuJoCo envs up front too).
    import gymnasium.envs.mujoco  # noqa: F401
    import mujoco  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    from rpg_control.train import train

    config = _config(env, steps)
    config.backend = backend
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train(config, run_dir, progress=False)
        elapsed = time.perf_counter() - start
        rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    done = rows[-1]["step"]
    return {"steps": done, "seconds": elapsed, "steps_per_second": done / elapsed, "peak_rss_mb": _peak_rss_mb()}


def run_sb3(env: str, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rpg_control.envs import get_env_spec

    config = _config(env, steps)
    spec = get_env_spec(env)
    start = time.perf_counter()  # like rpg's train(): env and model construction are part of the run
    vec = make_vec_env(spec.gym_id, n_envs=config.num_envs, seed=config.seed, vec_env_cls=DummyVecEnv, env_kwargs=dict(spec.gym_kwargs))
    vec = VecNormalize(vec, norm_obs=True, norm_reward=False, clip_obs=10.0, gamma=config.gamma)
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[config.activation]
    model = PPO(
        "MlpPolicy",
        vec,
        learning_rate=config.learning_rate,
        n_steps=config.steps_per_env,
        batch_size=math.ceil(config.batch_size / config.num_minibatches),
        n_epochs=config.num_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        clip_range_vf=config.value_clip_range,
        vf_coef=config.value_coef,
        max_grad_norm=config.max_grad_norm,
        target_kl=None,
        policy_kwargs=dict(
            net_arch=dict(pi=list(config.actor_hidden), vf=list(config.critic_hidden)),
            activation_fn=activation,
            log_std_init=math.log(config.init_std),
        ),
        seed=config.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps, progress_bar=False)
    elapsed = time.perf_counter() - start
    done = model.num_timesteps
    return {"steps": done, "seconds": elapsed, "steps_per_second": done / elapsed, "peak_rss_mb": _peak_rss_mb()}


def run_raw(env: str, steps: int) -> dict:
    import mujoco
    import numpy as np

    from rpg_control.envs import NativeMujocoVecEnv, get_env_spec

    config = _config(env, steps)
    envs = NativeMujocoVecEnv(get_env_spec(env), config.num_envs)  # only for its model, data and frame skip
    envs.reset(seed=0)
    model, datas, frame_skip = envs.model, envs.datas, envs.rules.frame_skip
    controls = np.random.default_rng(0).uniform(-1, 1, size=(64, config.num_envs, model.nu))
    iterations = steps // config.num_envs
    start = time.perf_counter()
    for t in range(iterations):
        for i, data in enumerate(datas):
            data.ctrl[:] = controls[t % 64, i]
            mujoco.mj_step(model, data, nstep=frame_skip)
    elapsed = time.perf_counter() - start
    done = iterations * config.num_envs
    return {"steps": done, "seconds": elapsed, "steps_per_second": done / elapsed, "peak_rss_mb": _peak_rss_mb()}


def _synthetic_rollout(model, spec, config, generator):
    """A rollout buffer of the trainer's shapes [T, N, ...]; actions and log-probs drawn from the
    policy itself (so PPO ratios start at 1 as in training), a few episode ends."""
    import torch

    T, N = config.steps_per_env, config.num_envs
    obs = torch.randn(T, N, spec.obs_dim, generator=generator)
    with torch.no_grad():
        actions, logprobs = model.actor.sample(obs, generator=generator)
        values = model.critic(obs)
        last_values = model.critic(torch.randn(N, spec.obs_dim, generator=generator))
    terminated = torch.rand(T, N, generator=generator) < 0.002
    truncated = torch.rand(T, N, generator=generator) < 0.001
    basic, addon = torch.randn(T, N, generator=generator), torch.randn(T, N, generator=generator)
    return obs, actions, logprobs, values, basic, addon, terminated, truncated, torch.zeros(T, N), last_values


def run_update(env: str, steps: int) -> dict:
    """The trainer's step 2 alone (RPG reward + PPO update) on synthetic rollouts, no env."""
    import torch

    torch.set_num_threads(1)
    from rpg_control.actor_critic import ActorCritic
    from rpg_control.algorithm import Rollout, make_optimizer, ppo_update, rpg_step_reward
    from rpg_control.envs import get_env_spec

    config = _config(env, steps)
    spec = get_env_spec(env)
    coefficients, entropy_coef, reward_kind = config.reward_setup()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ActorCritic.from_config(config, spec.obs_dim, spec.act_dim)
    optimizer = make_optimizer(model, config)
    per_iteration = config.steps_per_env * config.num_envs
    iterations = max(1, steps // per_iteration)
    buffers = [_synthetic_rollout(model, spec, config, generator) for _ in range(2)]

    def update(b) -> None:
        obs, actions, logprobs, values, basic, addon, terminated, truncated, final_values, last_values = b
        rewards = rpg_step_reward(reward_kind, basic, addon, logprobs, None, coefficients, config.reward_scale)
        rollout = Rollout(obs, actions, logprobs, values, rewards, terminated, truncated, final_values, last_values)
        ppo_update(model, optimizer, rollout, config, entropy_coef)

    update(buffers[0])  # warm-up: first-call allocations, Adam state
    start = time.perf_counter()
    for i in range(iterations):
        update(buffers[i % 2])
    elapsed = time.perf_counter() - start
    done = iterations * per_iteration
    return {"steps": done, "seconds": elapsed, "steps_per_second": done / elapsed, "peak_rss_mb": _peak_rss_mb()}


def run_act(env: str, steps: int) -> dict:
    """The trainer's acting forward alone: actor.sample + critic on num_envs observations per step."""
    import torch

    torch.set_num_threads(1)
    from rpg_control.actor_critic import ActorCritic
    from rpg_control.envs import get_env_spec

    config = _config(env, steps)
    spec = get_env_spec(env)
    torch.manual_seed(config.seed)
    model = ActorCritic.from_config(config, spec.obs_dim, spec.act_dim)
    observations = torch.randn(64, config.num_envs, spec.obs_dim)
    iterations = max(1, steps // config.num_envs)

    def act(obs) -> None:
        with torch.no_grad():
            model.actor.sample(obs)
            model.critic(obs)

    for t in range(64):  # warm-up
        act(observations[t])
    start = time.perf_counter()
    for t in range(iterations):
        act(observations[t % 64])
    elapsed = time.perf_counter() - start
    done = iterations * config.num_envs
    return {"steps": done, "seconds": elapsed, "steps_per_second": done / elapsed, "peak_rss_mb": _peak_rss_mb()}


RUNNERS = {
    "rpg native": lambda env, steps: run_rpg(env, steps, "native"),
    "rpg gymnasium": lambda env, steps: run_rpg(env, steps, "gymnasium"),
    "rpg envpool": lambda env, steps: run_rpg(env, steps, "envpool"),  # only if envpool is installed
    "sb3": run_sb3,
    "raw simulator": run_raw,
    "update alone": run_update,
    "act alone": run_act,
}
PIECES = ("raw simulator", "update alone", "act alone")  # not trainers: the machine's limit is made of them


def machine_limit(best: dict[str, dict]) -> dict:
    """Steps/s of a serial trainer doing nothing but raw simulation, acting forward and update."""
    sim = 1.0 / best["raw simulator"]["steps_per_second"]
    update = 1.0 / best["update alone"]["steps_per_second"]
    act = 1.0 / best["act alone"]["steps_per_second"]
    limit = 1.0 / (sim + update + act)
    sb3 = best["sb3"]["steps_per_second"]
    return {
        "formula": "1 / (1/raw_sim_steps_per_second + update_seconds_per_step + act_seconds_per_step)",
        "sim_seconds_per_step": sim,
        "update_seconds_per_step": update,
        "act_seconds_per_step": act,
        "limit_steps_per_second": limit,
        "fraction_of_limit": {name: b["steps_per_second"] / limit for name, b in best.items() if name not in PIECES},
        "ceiling_speedup_vs_sb3": limit / sb3,
    }


def _in_subprocess(name: str, env: str, steps: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--env", env, "--steps", str(steps)]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=environ)
    if out.returncode != 0:
        raise RuntimeError(f"{name} on {env} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["halfcheetah", "hopper"])
    parser.add_argument("--steps", type=int, default=30000, help="env steps per training measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS / "control_throughput.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(RUNNERS[args.worker](args.env, args.steps)))
        return 0

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    import mujoco
    import stable_baselines3
    import torch

    import importlib.util

    if importlib.util.find_spec("envpool") is None:
        del RUNNERS["rpg envpool"]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    for env in args.envs:
        runs: dict[str, list[dict]] = {name: [] for name in RUNNERS}
        for repeat in range(args.repeats):
            for name in RUNNERS:  # alternate so drifting machine load hits every contender alike
                runs[name].append(_in_subprocess(name, env, args.steps))
                print(f"{env:12s} {name:14s} repeat {repeat}: {runs[name][-1]['steps_per_second']:9.0f} steps/s", file=sys.stderr)
        best = {name: max(r, key=lambda x: x["steps_per_second"]) for name, r in runs.items()}
        sb3, raw = best["sb3"]["steps_per_second"], best["raw simulator"]["steps_per_second"]
        results[env] = {
            "settings": {k: v for k, v in _config(env, args.steps).to_dict().items() if k in (
                "num_envs", "steps_per_env", "num_minibatches", "num_epochs", "actor_hidden", "critic_hidden", "activation",
                "init_std", "gamma", "gae_lambda", "clip_range", "value_clip_range", "value_coef", "max_grad_norm", "learning_rate")},
            "runs": runs,
            "best": best,
            "speedup_vs_sb3": {name: best[name]["steps_per_second"] / sb3 for name in best if name.startswith("rpg")},
            "fraction_of_raw_simulator": {name: best[name]["steps_per_second"] / raw for name in best if name not in PIECES},
            "machine_limit": machine_limit(best),
        }

    table = Table(title=f"PPO end-to-end env-steps/s, {args.steps} steps per run, best of {args.repeats} (1 thread)")
    for column in ("env", "contender", "steps/s", "× SB3", "of raw sim", "of limit", "peak RSS MB"):
        table.add_column(column, justify="right" if column not in ("env", "contender") else "left")
    for env, result in results.items():
        sb3 = result["best"]["sb3"]["steps_per_second"]
        raw = result["best"]["raw simulator"]["steps_per_second"]
        limit = result["machine_limit"]["limit_steps_per_second"]
        for name, best in result["best"].items():
            sps = best["steps_per_second"]
            if name in PIECES:
                table.add_row(env, name, f"{sps:,.0f}", "", "", "", f"{best['peak_rss_mb']:.0f}")
            else:
                table.add_row(env, name, f"{sps:,.0f}", f"{sps / sb3:.2f}", f"{sps / raw:.0%}", f"{sps / limit:.0%}", f"{best['peak_rss_mb']:.0f}")
    Console().print(table)

    limits = Table(title="The machine's limit: a serial trainer doing only raw sim + acting forward + PPO update")
    for column in ("env", "sim µs/step", "act µs/step", "update µs/step", "limit steps/s", "rpg native of limit", "SB3 of limit", "ceiling on rpg ÷ SB3"):
        limits.add_column(column, justify="left" if column == "env" else "right")
    for env, result in results.items():
        m = result["machine_limit"]
        limits.add_row(
            env, f"{m['sim_seconds_per_step'] * 1e6:.1f}", f"{m['act_seconds_per_step'] * 1e6:.1f}", f"{m['update_seconds_per_step'] * 1e6:.1f}",
            f"{m['limit_steps_per_second']:,.0f}", f"{m['fraction_of_limit']['rpg native']:.0%}", f"{m['fraction_of_limit']['sb3']:.0%}",
            f"{m['ceiling_speedup_vs_sb3']:.2f}×",
        )
    Console().print(limits)

    payload = {
        "benchmark": "control_throughput",
        "command": " ".join([Path(sys.executable).name, "benchmarks/control_throughput.py", *(argv if argv is not None else sys.argv[1:])]),
        "commit": _git_commit(),
        "started_utc": started,
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(), "threads": 1},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "mujoco": mujoco.__version__, "stable_baselines3": stable_baselines3.__version__, "numpy": np.__version__},
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "results": results,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, output)
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
