"""End-to-end PPO training throughput on MuJoCo: rpg_control vs Stable-Baselines3, side by side.

For each env, at the same settings (rpg_control's YAML defaults for the env: number of envs,
steps per env, minibatches, epochs, actor/critic widths and activation, initial std, γ, λ,
clip range, value coefficient, gradient clip; observation normalization on in both), it runs
in fresh subprocesses, one after another, repeated ``--repeats`` times in alternation:

* ``rpg native``     — ``rpg_control.train.train`` on the native mujoco backend (the default);
* ``sb3``            — ``stable_baselines3.PPO`` on a ``DummyVecEnv`` of the same gymnasium v5
  env with ``VecNormalize(norm_reward=False)``;
* ``raw simulator``  — ``mujoco.mj_step`` on one ``MjData`` per env with random controls, no
  policy, no Python env logic: the limit of env-steps/s on this machine;
* ``update alone``   — rpg_control's real PPO update (``rpg_control.algorithm.rpg_step_reward`` +
  ``ppo_update``: GAE, ``num_epochs`` × ``num_minibatches`` Adam steps with gradient clipping) of
  the same networks (``ActorCritic.from_config``) and optimizer (``make_optimizer``) on a
  synthetic rollout buffer of the right shapes (``steps_per_env`` × ``num_envs``), no env stepping;
  as many updates as a training run of ``--steps`` makes, after one untimed warm-up update;
* ``update legacy``  — the same on the update as of commit 864929d, kept verbatim in
  ``tests/control/legacy_ppo_update.py`` (``nn.Sequential`` forward under autograd, per-minibatch indexing,
  per-tensor gradient norm, foreach Adam): the reference the fast update is measured against;
* ``act alone`` / ``act legacy`` — the policy forward for acting, on ``num_envs`` observations
  per step (``actor.sample`` + ``critic`` under ``no_grad``, as in the trainer's rollout), no env
  stepping; the current forward and the legacy ``nn.Sequential`` one;
* ``gemm peak``      — one 2048×2048×2048 fp32 ``torch.mm`` on one thread: the core's GEMM rate
  (best of 5); it and the other pieces (raw simulator, update and act, legacy and new) share one
  process per repeat, each legacy/new pair back to back;
* ``rpg gymnasium`` / ``rpg envpool`` — with ``--backends``: the trainer on gymnasium's
  SyncVectorEnv / envpool's C++ ports (the backend's share).

Reported: env-steps/s (median of the repeats; every run is kept in the JSON), ratios to SB3, the
fraction of raw simulator speed a training run reaches, and peak RSS of each process. A run's time
is everything from building its envs and model to the trained model (rollout + update; rpg also
writes its checkpoints, metrics and TensorBoard logs), not interpreter start-up or imports.

Two limits, per env step:

* the machine's limit for a serial trainer at these settings, one that did nothing but simulate,
  act and update, one after another: ``1 / (1/raw_sim + update + act)`` (with the current update);
  reported for every trainer: the fraction of it reached, and ``limit ÷ SB3``;
* the hardware's limit for the update: its GEMM FLOPs (forward, weight gradients and input
  gradients of every linear layer of both networks, every sample every epoch) at the ``gemm
  peak`` rate; reported: the fraction of that rate the update reaches (old and new).

The machine may be shared: the load average before and after is recorded. Results go to
``benchmarks/results/control_throughput.json`` (with provenance) and a markdown summary to
``benchmarks/results/control_throughput.md``.

    OMP_NUM_THREADS=1 python benchmarks/control_throughput.py --steps 32768 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rpg.utils.atomic import write_json_atomic, write_text_atomic
from rpg.utils.provenance import provenance

RESULTS = Path(__file__).parent / "results"
# The frozen reference update (the code before the fast path) lives with its equality test.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


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
    import torch._dynamo  # noqa: F401  (imported by the first optimizer's add_param_group: seconds)
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
    import torch._dynamo  # noqa: F401  (as for rpg: an import, not training time)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rpg_control.envs import get_env_spec

    config = _config(env, steps)
    spec = get_env_spec(env)
    start = time.perf_counter()  # like rpg's train(): env and model construction are part of the run
    vec = make_vec_env(
        spec.gym_id, n_envs=config.num_envs, seed=config.seed, vec_env_cls=DummyVecEnv, env_kwargs=dict(spec.gym_kwargs)
    )
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


def run_update(env: str, steps: int, legacy: bool = False) -> dict:
    """The trainer's step 2 alone (RPG reward + PPO update) on synthetic rollouts, no env;
    ``legacy``: the update as of commit 864929d (``tests/control/legacy_ppo_update.py``)."""
    import torch

    torch.set_num_threads(1)
    import torch._dynamo  # imported by the first optimizer: an import, not update time
    from control.legacy_ppo_update import legacy_make_optimizer, legacy_ppo_update

    from rpg_control.actor_critic import ActorCritic
    from rpg_control.algorithm import Rollout, make_optimizer, ppo_update, rpg_step_reward
    from rpg_control.envs import get_env_spec

    if legacy:
        make_optimizer, ppo_update = legacy_make_optimizer, legacy_ppo_update
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


def run_act(env: str, steps: int, legacy: bool = False) -> dict:
    """The trainer's acting forward alone: actor.sample + critic on num_envs observations per step."""
    import torch

    torch.set_num_threads(1)
    from control.legacy_ppo_update import legacy_critic, legacy_sample

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
            if legacy:
                legacy_sample(model.actor, obs)
                legacy_critic(model, obs)
            else:
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


GEMM_SIZE = 2048


def run_gemm(env: str, steps: int) -> dict:
    """The core's fp32 GEMM rate: a 2048³ ``torch.mm`` on one thread, best of 5 after a warm-up.
    ``steps_per_second`` holds GFLOP/s here."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    out = torch.empty(GEMM_SIZE, GEMM_SIZE)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    gflops = 2 * GEMM_SIZE**3 / min(times) / 1e9
    return {
        "steps": 0,
        "seconds": min(times),
        "steps_per_second": gflops,
        "gflops": gflops,
        "peak_rss_mb": _peak_rss_mb(),
    }


def update_gemm_flops_per_step(env: str) -> float:
    """GEMM FLOPs of the PPO update per env step: every sample passes every epoch through both
    networks' linear layers forward (2·in·out), weight gradient (2·in·out) and input gradient
    (2·in·out, not for the first layer: the observation needs none)."""
    from rpg_control.envs import get_env_spec

    config = _config(env, 1)
    spec = get_env_spec(env)
    out_actor = spec.act_dim * (2 if config.std_type == "state" else 1)
    flops = 0.0
    for hidden, out in ((list(config.actor_hidden), out_actor), (list(config.critic_hidden), 1)):
        sizes = [spec.obs_dim, *hidden, out]
        layers = list(zip(sizes[:-1], sizes[1:]))
        flops += sum(2 * 3 * i * o for i, o in layers) - 2 * layers[0][0] * layers[0][1]
    return flops * config.num_epochs


def run_pieces(env: str, steps: int) -> dict:
    """The limit's pieces in one process (saves interpreter and import start-ups), in the order
    update legacy, update alone, act legacy, act alone, raw simulator, gemm peak."""
    return {
        "update legacy": run_update(env, steps, legacy=True),
        "update alone": run_update(env, steps),
        "act legacy": run_act(env, steps, legacy=True),
        "act alone": run_act(env, steps),
        "raw simulator": run_raw(env, steps),
        "gemm peak": run_gemm(env, steps),
    }


RUNNERS = {
    "rpg native": lambda env, steps: run_rpg(env, steps, "native"),
    "sb3": run_sb3,
    "pieces": run_pieces,  # raw simulator, update alone / legacy, act alone / legacy, gemm peak
    "rpg gymnasium": lambda env, steps: run_rpg(env, steps, "gymnasium"),  # only with --backends
    "rpg envpool": lambda env, steps: run_rpg(env, steps, "envpool"),  # only with --backends, if installed
}
BACKENDS = ("rpg gymnasium", "rpg envpool")
# not trainers: the limits are made of them
PIECES = ("raw simulator", "update alone", "update legacy", "act alone", "act legacy", "gemm peak")


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
        "update_legacy_seconds_per_step": 1.0 / best["update legacy"]["steps_per_second"],
        "act_seconds_per_step": act,
        "act_legacy_seconds_per_step": 1.0 / best["act legacy"]["steps_per_second"],
        "limit_steps_per_second": limit,
        "fraction_of_limit": {name: b["steps_per_second"] / limit for name, b in best.items() if name not in PIECES},
        "ceiling_speedup_vs_sb3": limit / sb3,
    }


def hardware_limit(env: str, best: dict[str, dict]) -> dict:
    """The update's GEMM FLOPs at the core's measured GEMM rate, and the share of it reached."""
    flops = update_gemm_flops_per_step(env)
    gflops = best["gemm peak"]["gflops"]
    at_peak = flops / (gflops * 1e9)
    reached = {name: at_peak * best[name]["steps_per_second"] for name in ("update alone", "update legacy")}
    return {
        "formula": "update_gemm_flops_per_step / gemm_peak_flops_per_second",
        "update_gemm_flops_per_step": flops,
        "gemm_peak_gflops": gflops,
        "gemm_size": GEMM_SIZE,
        "update_seconds_per_step_at_peak": at_peak,
        "fraction_of_gemm_peak": reached,
        "achieved_gflops": {name: flops * best[name]["steps_per_second"] / 1e9 for name in reached},
    }


def _in_subprocess(name: str, env: str, steps: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--env", env, "--steps", str(steps)]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=environ)
    if out.returncode != 0:
        raise RuntimeError(f"{name} on {env} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    """The run with the median steps/s (the lower middle one for an even count), with the median."""
    ordered = sorted(runs, key=lambda r: r["steps_per_second"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["steps_per_second"] = statistics.median(r["steps_per_second"] for r in runs)
    if "gflops" in chosen:
        chosen["gflops"] = statistics.median(r["gflops"] for r in runs)
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return chosen


def _paired(new: list[dict], old: list[dict]) -> float:
    return statistics.median(a["steps_per_second"] / b["steps_per_second"] for a, b in zip(new, old, strict=True))


# The paper's protocol per env: Tables I (4 variants), II (4 customizations) and III (1 state-std variant)
# = 9 configurations × 5 seeds × 5M env steps; Table II's priors are Table I's Soft PPO runs.
PROTOCOL_STEPS_PER_ENV = 9 * 5 * 5_000_000
# Stage 1 (issue 11): Soft PPO × 5 seeds on every env, and HalfCheetah's Table II (4 rows × 5 seeds).
STAGE1_RUNS = {"halfcheetah": 25, "hopper": 5, "ant": 5}


def protocol_cost_lines(payload: dict) -> list[str]:
    """Training core-hours of the paper's protocol at the measured rpg-native rates (one run per core)."""
    lines = [
        "",
        (
            "What the paper's protocol costs at these rates (training only, one run per core; evaluation adds "
            f"< 1%). Per env: {PROTOCOL_STEPS_PER_ENV / 1e6:.0f}M env steps (Tables I–III, 9 configurations × 5 seeds "
            "× 5M); stage 1 = the Soft PPO seeds and HalfCheetah's Table II."
        ),
        "",
        "| env | rpg native (median) | core-hours, whole protocol | stage-1 runs | core-hours, stage 1 |",
        "|---|---|---|---|---|",
    ]
    total = stage1 = 0.0
    for env, r in payload["results"].items():
        rate = r["best"]["rpg native"]["steps_per_second"]
        hours = PROTOCOL_STEPS_PER_ENV / rate / 3600
        runs = STAGE1_RUNS.get(env, 0)
        hours1 = runs * 5_000_000 / rate / 3600
        total, stage1 = total + hours, stage1 + hours1
        lines.append(f"| {env} | {rate:,.0f}/s | {hours:.1f} | {runs} | {hours1:.1f} |")
    lines.append(f"| **measured envs** | | **{total:.1f}** | | **{stage1:.1f}** |")
    return lines


def markdown_summary(payload: dict) -> str:
    """The benchmark's result as a short markdown page (tables + provenance)."""
    facts = payload["provenance"]
    m, load, versions = facts["machine"], facts["load"], facts["versions"]
    lines = [
        "# PPO on MuJoCo: rpg_control vs Stable-Baselines3, and the fast update vs the legacy one",
        "",
        f"Written by `benchmarks/control_throughput.py` ({facts['started_utc']}, "
        f"commit `{(facts['commit'] or '?')[:10]}`" + (", uncommitted changes" if facts["code_dirty"] else "") + "):",
        (
            f"`{facts['command']}`. {m['cpu']}, {m['cpus']} cores, one torch thread per process; torch "
            f"{versions['torch']}, mujoco {versions['mujoco']}, SB3 {versions.get('stable-baselines3', '?')}."
        ),
        (
            f"Load average {load['load_average_before'][0]:.1f} before, {load['load_average_after'][0]:.1f} after "
            f"(1-min) on {m['cpus']} cores (other jobs may share the machine). Every number is the median of "
            f"{payload['repeats']} runs interleaved with the others ({payload['steps_per_run']:,} env steps per "
            "training run); in brackets the median of the per-repeat ratios (each pair ran back to back). Read the "
            "ratios rather than the absolute rates."
        ),
        "",
        (
            "| env | rpg native | SB3 | **rpg ÷ SB3** | update legacy → new (µs/env step) | **update speed-up** "
            "| act legacy → new (µs/env step) | raw sim (µs/env step) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for env, r in payload["results"].items():
        b, lim = r["best"], r["machine_limit"]
        lines.append(
            f"| {env} | {b['rpg native']['steps_per_second']:,.0f}/s | {b['sb3']['steps_per_second']:,.0f}/s "
            f"| **{r['speedup_vs_sb3']['rpg native']:.2f}×** ({r['paired_median']['rpg native / sb3']:.2f}×) "
            f"| {lim['update_legacy_seconds_per_step'] * 1e6:.1f} → {lim['update_seconds_per_step'] * 1e6:.1f} "
            f"| **{r['update_speedup_vs_legacy']:.2f}×** ({r['paired_median']['update alone / update legacy']:.2f}×) "
            f"| {lim['act_legacy_seconds_per_step'] * 1e6:.1f} → {lim['act_seconds_per_step'] * 1e6:.1f} "
            f"| {lim['sim_seconds_per_step'] * 1e6:.1f} |"
        )
    lines += [
        "",
        (
            "Limits per env step. *Machine*: a serial trainer that only simulates (raw `mj_step`), acts and updates "
            "(the new update): 1 / (sim + act + update). *Hardware (update)*: the update's GEMM FLOPs (forward, "
            "weight and input gradients of every linear layer, every sample, every epoch) at the core's measured "
            f"fp32 GEMM rate ({GEMM_SIZE}³ `torch.mm`, one thread)."
        ),
        "",
        (
            "| env | machine limit | rpg native of it | SB3 of it | update GEMM FLOP/env step | GEMM peak "
            "| update at peak | **new update of GEMM peak** | legacy of GEMM peak |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env, r in payload["results"].items():
        lim, hw = r["machine_limit"], r["hardware_limit"]
        lines.append(
            f"| {env} | {lim['limit_steps_per_second']:,.0f}/s | {lim['fraction_of_limit']['rpg native']:.0%} "
            f"| {lim['fraction_of_limit']['sb3']:.0%} | {hw['update_gemm_flops_per_step'] / 1e6:.1f} M "
            f"| {hw['gemm_peak_gflops']:.1f} GFLOP/s | {hw['update_seconds_per_step_at_peak'] * 1e6:.1f} µs "
            f"| **{hw['fraction_of_gemm_peak']['update alone']:.0%}** "
            f"({hw['achieved_gflops']['update alone']:.1f} GFLOP/s) "
            f"| {hw['fraction_of_gemm_peak']['update legacy']:.0%} "
            f"({hw['achieved_gflops']['update legacy']:.1f} GFLOP/s) |"
        )
    lines += protocol_cost_lines(payload)
    lines += [
        "",
        "Full runs, settings and provenance: `benchmarks/results/control_throughput.json`; what was tried: "
        + "`docs/control_speed.md`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["halfcheetah", "hopper"])
    parser.add_argument("--steps", type=int, default=32768, help="env steps per training measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", action="store_true", help="also time rpg on gymnasium's and envpool's envs")
    parser.add_argument("--output", default=str(RESULTS / "control_throughput.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(RUNNERS[args.worker](args.env, args.steps)))
        return 0

    import importlib.util

    from rich.console import Console
    from rich.table import Table

    workers = [n for n in RUNNERS if n not in BACKENDS]
    if args.backends:
        workers += [n for n in BACKENDS if n != "rpg envpool" or importlib.util.find_spec("envpool") is not None]
    names = [n for n in workers if n != "pieces"] + list(PIECES)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    for env in args.envs:
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for repeat in range(args.repeats):
            for worker in workers:  # alternate so drifting machine load hits every contender alike
                out = _in_subprocess(worker, env, args.steps)
                for name, run in out.items() if worker == "pieces" else [(worker, out)]:
                    run["load_average"] = os.getloadavg()[0]
                    runs[name].append(run)
                    print(
                        f"{env:12s} {name:14s} repeat {repeat}: {run['steps_per_second']:9.0f} "
                        f"{'GFLOP/s' if name == 'gemm peak' else 'steps/s'}  (load {run['load_average']:.1f})",
                        file=sys.stderr,
                    )
        best = {name: _median_run(r) for name, r in runs.items()}
        sb3, raw = best["sb3"]["steps_per_second"], best["raw simulator"]["steps_per_second"]
        results[env] = {
            "settings": {
                k: v
                for k, v in _config(env, args.steps).to_dict().items()
                if k
                in (
                    "num_envs",
                    "steps_per_env",
                    "num_minibatches",
                    "num_epochs",
                    "actor_hidden",
                    "critic_hidden",
                    "activation",
                    "init_std",
                    "gamma",
                    "gae_lambda",
                    "clip_range",
                    "value_clip_range",
                    "value_coef",
                    "max_grad_norm",
                    "learning_rate",
                )
            },
            "runs": runs,
            "best": best,  # the median run of each contender (steps_per_second: the median)
            "speedup_vs_sb3": {name: best[name]["steps_per_second"] / sb3 for name in best if name.startswith("rpg")},
            "update_speedup_vs_legacy": (
                best["update alone"]["steps_per_second"] / best["update legacy"]["steps_per_second"]
            ),
            # the median of the per-repeat ratios: each pair ran back to back, so it is less noisy
            "paired_median": {
                "update alone / update legacy": _paired(runs["update alone"], runs["update legacy"]),
                "act alone / act legacy": _paired(runs["act alone"], runs["act legacy"]),
                "rpg native / sb3": _paired(runs["rpg native"], runs["sb3"]),
            },
            "act_speedup_vs_legacy": best["act alone"]["steps_per_second"] / best["act legacy"]["steps_per_second"],
            "fraction_of_raw_simulator": {
                name: best[name]["steps_per_second"] / raw for name in best if name not in PIECES
            },
            "machine_limit": machine_limit(best),
            "hardware_limit": hardware_limit(env, best),
        }

    table = Table(title=f"PPO end-to-end env-steps/s, {args.steps} steps per run, median of {args.repeats} (1 thread)")
    for column in ("env", "contender", "steps/s", "× SB3", "of raw sim", "of limit", "peak RSS MB"):
        table.add_column(column, justify="right" if column not in ("env", "contender") else "left")
    for env, result in results.items():
        sb3 = result["best"]["sb3"]["steps_per_second"]
        raw = result["best"]["raw simulator"]["steps_per_second"]
        limit = result["machine_limit"]["limit_steps_per_second"]
        for name, best in result["best"].items():
            sps = best["steps_per_second"]
            if name == "gemm peak":
                table.add_row(env, name, f"{sps:.1f} GFLOP/s", "", "", "", f"{best['peak_rss_mb']:.0f}")
            elif name in PIECES:
                table.add_row(env, name, f"{sps:,.0f}", "", "", "", f"{best['peak_rss_mb']:.0f}")
            else:
                table.add_row(
                    env,
                    name,
                    f"{sps:,.0f}",
                    f"{sps / sb3:.2f}",
                    f"{sps / raw:.0%}",
                    f"{sps / limit:.0%}",
                    f"{best['peak_rss_mb']:.0f}",
                )
    Console().print(table)

    limits = Table(
        title="Limits: a serial trainer doing only raw sim + acting forward + PPO update; the update at GEMM peak"
    )
    for column in (
        "env",
        "sim µs/step",
        "act µs/step",
        "update µs/step (legacy)",
        "update ×",
        "limit steps/s",
        "rpg native of limit",
        "SB3 of limit",
        "update of GEMM peak (legacy)",
    ):
        limits.add_column(column, justify="left" if column == "env" else "right")
    for env, result in results.items():
        m, hw = result["machine_limit"], result["hardware_limit"]
        limits.add_row(
            env,
            f"{m['sim_seconds_per_step'] * 1e6:.1f}",
            f"{m['act_seconds_per_step'] * 1e6:.1f}",
            f"{m['update_seconds_per_step'] * 1e6:.1f} ({m['update_legacy_seconds_per_step'] * 1e6:.1f})",
            f"{result['update_speedup_vs_legacy']:.2f}×",
            f"{m['limit_steps_per_second']:,.0f}",
            f"{m['fraction_of_limit']['rpg native']:.0%}",
            f"{m['fraction_of_limit']['sb3']:.0%}",
            f"{hw['fraction_of_gemm_peak']['update alone']:.0%} ({hw['fraction_of_gemm_peak']['update legacy']:.0%})",
        )
    Console().print(limits)

    command = " ".join(
        [
            "OMP_NUM_THREADS=1",
            "python",
            "benchmarks/control_throughput.py",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    load = {"load_average_before": load_before, "load_average_after": os.getloadavg(), "shared": True}
    payload = {
        "benchmark": "control_throughput",
        "provenance": provenance(command, extra={"started_utc": started, "load": load}),
        "wall_seconds": time.perf_counter() - wall,
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "statistic": "median of the repeats",
        "results": results,
    }
    output = Path(args.output)
    write_json_atomic(output, payload)
    summary = output.with_suffix(".md")
    write_text_atomic(summary, markdown_summary(payload))
    print(f"written to {output} and {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
