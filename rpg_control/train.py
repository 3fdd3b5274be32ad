"""Training: collect a rollout, compute the RPG reward, update with PPO, log, checkpoint. Repeat.

Read top to bottom, ``train`` is the whole algorithm (CleanRL style); the pieces live in
``envs`` (tasks, add-on rewards), ``actor_critic`` (policy, critic, normalizer), ``algorithm``
(reward composition + PPO update from ``rpg``) and ``checkpoint``.

Resume: if ``run_dir/checkpoints/last.pt`` exists, training continues from it (model, optimizer,
normalizer, learning rate, counters, RNG). Episodes that were running when the run stopped
are not resumed: the envs start fresh episodes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from rpg_control.actor_critic import ActorCritic, ObservationNormalizer
from rpg_control.algorithm import Rollout, make_optimizer, ppo_update, rpg_step_reward
from rpg.utils.atomic import write_text_atomic
from rpg_control.checkpoint import FORMAT, PriorPolicy, load_checkpoint, load_prior, prior_from_state, save_atomic
from rpg_control.config import ConfigError, TrainConfig, validate_config
from rpg_control.envs import get_env_spec, make_vec_env
from rpg.utils.provenance import provenance
from rpg_control.run_lock import run_lock

_RESUME_KEYS = ("env", "variant", "num_envs", "steps_per_env", "actor_hidden", "critic_hidden", "activation", "std_type", "alpha", "omega_prime", "alpha_hat")


class EpisodeStats:
    """Per-env running sums of one episode; finished episodes go to windows of recent episodes."""

    def __init__(self, num_envs: int, window: int):
        self.basic = np.zeros(num_envs)
        self.addon = np.zeros(num_envs)
        self.metric = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.recent = {k: deque(maxlen=window) for k in ("basic", "addon", "total", "metric", "length")}
        self.finished = 0

    def add(self, basic, addon, metric, done) -> None:
        self.basic += basic
        self.addon += addon
        self.metric += metric
        self.length += 1
        for i in np.flatnonzero(done):
            self.recent["basic"].append(self.basic[i])
            self.recent["addon"].append(self.addon[i])
            self.recent["total"].append(self.basic[i] + self.addon[i])
            self.recent["metric"].append(self.metric[i] / self.length[i])
            self.recent["length"].append(self.length[i])
            self.basic[i] = self.addon[i] = self.metric[i] = 0.0
            self.length[i] = 0
            self.finished += 1

    def means(self) -> dict[str, float | None]:
        def mean(name):
            return float(np.mean(self.recent[name])) if self.recent[name] else None

        return {
            "episode_return_total": mean("total"),
            "episode_return_basic": mean("basic"),
            "episode_return_addon": mean("addon"),
            "addon_metric": mean("metric"),
            "episode_length": mean("length"),
        }


def build_model(config: TrainConfig) -> tuple[ActorCritic, ObservationNormalizer]:
    spec = get_env_spec(config.env)
    return ActorCritic.from_config(config, spec.obs_dim, spec.act_dim), ObservationNormalizer(spec.obs_dim)


def _check_resume(saved: dict, config: TrainConfig, path: Path) -> None:
    changed = [k for k in _RESUME_KEYS if saved.get(k) != config.to_dict().get(k)]
    if changed:
        raise ConfigError(f"{path} was written by a different run ({', '.join(changed)} differ); use a new run_dir")


def train(config: TrainConfig, run_dir: str | Path, progress: bool = True) -> Path:
    """Train ``config`` in ``run_dir`` (resuming from ``checkpoints/last.pt``); return ``run_dir``.

    Holds ``run_dir``'s lock for the whole run: a second trainer on the same folder is refused in one
    line naming the holder (see ``rpg_control.run_lock``).
    """
    validate_config(config)
    with run_lock(run_dir):
        return _train_locked(config, Path(run_dir), progress)


def _train_locked(config: TrainConfig, run_dir: Path, progress: bool) -> Path:
    checkpoint_dir = run_dir / "checkpoints"
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    spec = get_env_spec(config.env)

    # --- everything that can fail on bad input, before any simulation -----------------------
    resume = load_checkpoint(last_path) if last_path.exists() else None
    if resume is not None:
        _check_resume(resume["config"], config, last_path)
    prior: PriorPolicy | None = None
    if config.is_customization:
        prior = prior_from_state(resume["prior"]) if resume is not None else load_prior(config)
    coefficients, entropy_coef, reward_kind = config.reward_setup()

    torch.manual_seed(config.seed)
    model, normalizer = build_model(config)
    normalizer_frozen = False
    if prior is not None:
        # Customization (App. D-2): the actor and its observation normalizer start as the prior's;
        # the critic is freshly initialized. The normalizer stays frozen so πθ starts equal to π_prior.
        model.actor.load_state_dict(prior.actor.state_dict())
        normalizer.load_state_dict(prior.normalizer.state_dict())
        normalizer_frozen = True
    optimizer = make_optimizer(model, config)
    step, iteration, best_score = 0, 0, -math.inf
    if resume is not None:
        model.load_state_dict(resume["model"])
        try:
            optimizer.load_state_dict(resume["optimizer"])
        except ValueError:  # a checkpoint from before the actor/critic parameter groups
            print(f"warning: {last_path}: optimizer state has another layout; Adam restarts", file=sys.stderr)
        normalizer.load_state_dict(resume["normalizer"])
        step, iteration = resume["step"], resume["iteration"]
        torch.set_rng_state(resume["rng"]["torch"])
    best_score, best_step = _best_so_far(resume, best_path, config)
    sessions = list((resume or {}).get("training_sessions") or [])
    warmup_steps = int(config.critic_warmup_fraction * config.total_steps) if prior is not None else 0
    run_provenance = provenance()
    session_start_step, selection_key = step, config.selection_key()

    def checkpoint_payload(score) -> dict:
        session = {"start_step": session_start_step, "end_step": step, "provenance": run_provenance,
                   "wall_seconds": last_row.get("wall_seconds"), "steps_per_second": last_row.get("steps_per_second")}
        return {
            "format": FORMAT,
            "config": config.to_dict(),
            "env": {"name": spec.name, "gym_id": spec.gym_id, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim},
            "step": step,
            "iteration": iteration,
            "best_score": best_score,
            "best_step": best_step,
            # the selection metric's value when this checkpoint was written (None: no episode finished yet)
            "selection": {"metric": selection_key, "setting": config.selection_metric, "value": score},
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "normalizer": normalizer.state_dict(),
            "normalizer_frozen": normalizer_frozen,
            "prior": None if prior is None else prior_state_from(prior),
            "rng": {"torch": torch.get_rng_state()},
            "metrics": last_row,
            "provenance": run_provenance,
            # one entry per process that trained this run (a killed and resumed run has several)
            "training_sessions": sessions + [session],
        }

    # --- the run ----------------------------------------------------------------------------
    envs = make_vec_env(spec.name, config.num_envs, config.backend, config.env_kwargs)
    obs = envs.reset(seed=config.seed + 7919 * iteration)  # a resumed run starts fresh episodes
    low = torch.as_tensor(envs.action_low, dtype=torch.float32)
    high = torch.as_tensor(envs.action_high, dtype=torch.float32)
    episodes = EpisodeStats(config.num_envs, config.episode_window)
    T, N = config.steps_per_env, config.num_envs
    buffers = {
        "obs": torch.zeros(T, N, spec.obs_dim),
        "actions": torch.zeros(T, N, spec.act_dim),
        "logprobs": torch.zeros(T, N),
        "prior_logprobs": torch.zeros(T, N),
        "values": torch.zeros(T, N),
        "basic": torch.zeros(T, N),
        "addon": torch.zeros(T, N),
        "terminated": torch.zeros(T, N, dtype=torch.bool),
        "truncated": torch.zeros(T, N, dtype=torch.bool),
        "final_values": torch.zeros(T, N),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    _drop_rows_after(run_dir / "metrics.jsonl", step)  # rows a killed run logged after its last checkpoint
    metrics_file = open(run_dir / "metrics.jsonl", "a")
    last_row: dict = {}
    bar = _ProgressBar(config.total_steps, step, enabled=progress, description=f"{config.variant} {spec.name}")
    start_time, start_step = time.perf_counter(), step
    try:
        while step < config.total_steps:
            iteration_start = time.perf_counter()
            # 1. rollout ---------------------------------------------------------------------
            for t in range(T):
                raw_obs = torch.as_tensor(obs, dtype=torch.float32)
                if config.normalize_obs and not normalizer_frozen:
                    normalizer.update(raw_obs)
                policy_obs = normalizer(raw_obs) if config.normalize_obs else raw_obs
                with torch.no_grad():
                    actions, logprobs = model.actor.sample(policy_obs)
                    values = model.critic(policy_obs)
                    if prior is not None and coefficients.needs_prior:
                        buffers["prior_logprobs"][t] = prior.log_prob(raw_obs, actions)
                out = envs.step(torch.clamp(actions, low, high).numpy())
                buffers["obs"][t] = policy_obs
                buffers["actions"][t] = actions
                buffers["logprobs"][t] = logprobs
                buffers["values"][t] = values
                buffers["basic"][t] = torch.from_numpy(out.reward)
                buffers["addon"][t] = torch.from_numpy(out.addon_reward)
                buffers["terminated"][t] = torch.from_numpy(out.terminated)
                buffers["truncated"][t] = torch.from_numpy(out.truncated)
                cut = out.truncated & ~out.terminated
                if cut.any():  # bootstrap a time-limit cut from the true final observation
                    final_obs = torch.as_tensor(out.final_obs[cut], dtype=torch.float32)
                    with torch.no_grad():
                        buffers["final_values"][t, torch.from_numpy(cut)] = model.critic(
                            normalizer(final_obs) if config.normalize_obs else final_obs
                        )
                episodes.add(out.reward, out.addon_reward, out.addon_metric, out.terminated | out.truncated)
                obs = out.obs
            raw_obs = torch.as_tensor(obs, dtype=torch.float32)
            with torch.no_grad():
                last_values = model.critic(normalizer(raw_obs) if config.normalize_obs else raw_obs)
            step += T * N
            iteration += 1
            rollout_time = time.perf_counter() - iteration_start

            # 2. the RPG reward (eq. 8) and the PPO update (eq. 6-7) ----------------------------
            rewards = rpg_step_reward(
                reward_kind,
                buffers["basic"],
                buffers["addon"],
                buffers["logprobs"],
                buffers["prior_logprobs"] if coefficients.needs_prior else None,
                coefficients,
                config.reward_scale,
            )
            rollout = Rollout(
                buffers["obs"], buffers["actions"], buffers["logprobs"], buffers["values"], rewards,
                buffers["terminated"], buffers["truncated"], buffers["final_values"], last_values,
            )
            warming_up = step <= warmup_steps
            if config.lr_schedule == "linear":
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate * max(0.0, 1.0 - step / config.total_steps)
            stats = ppo_update(model, optimizer, rollout, config, entropy_coef, update_actor=not warming_up)

            # 3. log ------------------------------------------------------------------------
            now = time.perf_counter()
            row = {
                "step": step,
                "iteration": iteration,
                **episodes.means(),
                "episodes": episodes.finished,
                "rpg_reward_mean": float(rewards.mean()),
                "logprob_mean": float(buffers["logprobs"].mean()),
                "prior_logprob_mean": float(buffers["prior_logprobs"].mean()) if coefficients.needs_prior else None,
                **stats,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "action_std_mean": _mean_action_std(model, buffers["obs"][0]),
                "critic_warmup": warming_up,
                "steps_per_second": (step - start_step) / max(now - start_time, 1e-9),
                "rollout_seconds": rollout_time,
                "update_seconds": now - iteration_start - rollout_time,
                "wall_seconds": now - start_time,
            }
            last_row = row
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "iteration"):
                    writer.add_scalar(key, value, step)
            bar.update(step, row.get(selection_key))

            # 4. checkpoints ---------------------------------------------------------------------
            done = step >= config.total_steps
            every = config.checkpoint_every_steps
            if step // every > (step - T * N) // every or done:  # crossed a multiple of checkpoint_every_steps
                score = row.get(selection_key)
                # best.pt before last.pt: killed between the two, the resumed run reads the new best score
                # from best.pt (_best_so_far), so no kill point lets a worse policy replace the best one.
                if score is not None and score > best_score and not warming_up:
                    best_score, best_step = score, step
                    save_atomic(checkpoint_payload(score), best_path)
                save_atomic(checkpoint_payload(score), last_path)
    finally:
        bar.close()
        metrics_file.close()
        writer.close()
        envs.close()
    if not best_path.exists():  # no episode finished yet: the last policy is the best we know
        best_step = step
        save_atomic(checkpoint_payload(last_row.get(selection_key)), best_path)
    return run_dir


def _best_so_far(resume: dict | None, best_path: Path, config: TrainConfig) -> tuple[float, int | None]:
    """(best score, its step) to resume with: the higher of last.pt's record and best.pt's own score.

    best.pt is written before last.pt, so a run killed between the two has a best.pt newer than
    last.pt's record; trusting last.pt alone would let the resumed run replace it with a worse policy.
    """
    best_score, best_step = -math.inf, None
    if resume is not None:
        best_score, best_step = resume["best_score"], resume.get("best_step")
    if best_path.exists():
        saved = load_checkpoint(best_path)
        _check_resume(saved["config"], config, best_path)
        if saved.get("best_score") is not None and saved["best_score"] > best_score:
            best_score, best_step = saved["best_score"], saved["step"]
    return best_score, best_step


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep only the metrics rows up to ``step`` (atomic rewrite), so a resumed run's log has no repeats.

    A line cut short by a kill mid-write (not valid JSON) is dropped: its iteration is redone anyway.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


@torch.no_grad()
def _mean_action_std(model: ActorCritic, obs: torch.Tensor) -> float:
    return float(model.actor.distribution_params(obs)[1].exp().mean())


def prior_state_from(prior: PriorPolicy) -> dict:
    return {"actor": prior.actor.state_dict(), "normalizer": prior.normalizer.state_dict(), "config": prior.config.to_dict()}


class _ProgressBar:
    """A rich progress bar with env steps, steps/s and the latest return (silent when disabled)."""

    def __init__(self, total: int, completed: int, enabled: bool, description: str):
        self.progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} steps/s"),
            TextColumn("return {task.fields[score]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed, speed="-", score="-")
        self.start, self.start_step = time.perf_counter(), completed

    def update(self, step: int, score: float | None) -> None:
        if self.progress is None:
            return
        speed = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=step, speed=f"{speed:,.0f}", score="-" if score is None else f"{score:,.1f}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
