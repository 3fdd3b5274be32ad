"""Training loop invariants: critic warm-up freezes the actor, checkpoints round-trip bit-exactly,
resume continues from the saved step, the customized actor starts as the prior, bad priors fail early."""

import json

import pytest
import torch

pytest.importorskip("mujoco")

import rpg_control.train as train_module  # noqa: E402
from rpg_control.actor_critic import GaussianActor  # noqa: E402
from rpg_control.algorithm import Rollout, ppo_update  # noqa: E402
from rpg_control.checkpoint import load_checkpoint, load_prior, save_atomic  # noqa: E402
from rpg_control.cli import main as cli_main  # noqa: E402
from rpg_control.config import ConfigError, load_config  # noqa: E402
from rpg_control.evaluate import evaluate  # noqa: E402
from rpg_control.train import build_model, train  # noqa: E402

TINY = {"num_envs": 2, "steps_per_env": 8, "num_minibatches": 2, "num_epochs": 2, "checkpoint_every_steps": 16}


def tiny_config(variant="soft", env="hopper", **overrides):
    return load_config(env, variant, {**TINY, "total_steps": 64, **overrides})


@pytest.fixture(scope="module")
def prior_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("prior")
    train(tiny_config(total_steps=48), run_dir, progress=False)
    return run_dir / "checkpoints" / "last.pt"


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ppo_update_without_actor_changes_only_the_critic():
    config = tiny_config()
    model, _ = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    T, N = 8, 2
    g = torch.Generator().manual_seed(0)
    obs, actions = torch.randn(T, N, 11, generator=g), torch.randn(T, N, 3, generator=g)
    with torch.no_grad():
        mean, log_std = model.actor.distribution_params(obs)
        logprobs = GaussianActor.log_prob(actions, mean, log_std)
        values = model.critic(obs)
    zeros = torch.zeros(T, N, dtype=torch.bool)
    rollout = Rollout(
        obs, actions, logprobs, values, torch.randn(T, N, generator=g), zeros, zeros, torch.zeros(T, N), torch.zeros(N)
    )
    actor_before = {k: v.clone() for k, v in model.actor.state_dict().items()}
    critic_before = {k: v.clone() for k, v in model.critic.state_dict().items()}
    ppo_update(model, optimizer, rollout, config, entropy_coef=0.5, update_actor=False)
    assert all(torch.equal(actor_before[k], v) for k, v in model.actor.state_dict().items())
    assert any(not torch.equal(critic_before[k], v) for k, v in model.critic.state_dict().items())
    ppo_update(model, optimizer, rollout, config, entropy_coef=0.5, update_actor=True)
    assert any(not torch.equal(actor_before[k], v) for k, v in model.actor.state_dict().items())


def test_customization_starts_from_the_prior_and_warmup_freezes_the_actor(prior_checkpoint, tmp_path, monkeypatch):
    """First 5%·total steps: only the critic is fitted; the actor stays bit-equal to the prior's."""
    prior = load_prior(tiny_config("residual", prior=str(prior_checkpoint)))
    calls = []
    real_update = train_module.ppo_update

    def recording_update(model, optimizer, rollout, config, entropy_coef, update_actor=True):
        before = {k: v.clone() for k, v in model.actor.state_dict().items()}
        critic_before = [p.clone() for p in model.critic.parameters()]
        stats = real_update(model, optimizer, rollout, config, entropy_coef, update_actor=update_actor)
        actor_same = all(torch.equal(before[k], v) for k, v in model.actor.state_dict().items())
        equals_prior = all(torch.equal(prior.actor.state_dict()[k], v) for k, v in before.items())
        critic_moved = any(not torch.equal(a, b) for a, b in zip(critic_before, model.critic.parameters()))
        calls.append((update_actor, actor_same, equals_prior, critic_moved))
        return stats

    monkeypatch.setattr(train_module, "ppo_update", recording_update)
    # 16 steps per iteration, 320 steps: the 5% warm-up (16 steps) is the first iteration; make it 4.
    config = tiny_config("residual", prior=str(prior_checkpoint), total_steps=320, critic_warmup_fraction=0.2)
    train(config, tmp_path, progress=False)
    warmup_iterations = int(0.2 * 320) // 16
    assert [c[0] for c in calls] == [False] * warmup_iterations + [True] * (len(calls) - warmup_iterations)
    for _update_actor, actor_same, equals_prior, critic_moved in calls[:warmup_iterations]:
        assert actor_same and equals_prior and critic_moved
    assert not calls[warmup_iterations][1]  # after the warm-up the actor moves
    rows = _rows(tmp_path)
    assert [r["critic_warmup"] for r in rows[: warmup_iterations + 1]] == [True] * warmup_iterations + [False]
    assert all(r["prior_logprob_mean"] is not None for r in rows)


def test_checkpoint_round_trips_bit_exactly(prior_checkpoint, tmp_path):
    payload = load_checkpoint(prior_checkpoint)
    copy_path = tmp_path / "copy.pt"
    save_atomic(payload, copy_path)
    again = load_checkpoint(copy_path)
    assert again.keys() == payload.keys()
    for section in ("model", "optimizer", "normalizer"):
        flat_a, flat_b = _flatten(payload[section]), _flatten(again[section])
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            a, b = flat_a[key], flat_b[key]
            assert (torch.equal(a, b) and a.dtype == b.dtype) if torch.is_tensor(a) else a == b, (section, key)
    assert again["config"] == payload["config"] and again["step"] == payload["step"]
    # A model rebuilt from the checkpoint acts exactly like one rebuilt from the copy.
    config = load_config("hopper", "soft", {**TINY, "total_steps": 64})
    model_a, norm_a = build_model(config)
    model_b, norm_b = build_model(config)
    model_a.load_state_dict(payload["model"]), norm_a.load_state_dict(payload["normalizer"])
    model_b.load_state_dict(again["model"]), norm_b.load_state_dict(again["normalizer"])
    obs = torch.randn(5, 11)
    assert torch.equal(
        model_a.actor.distribution_params(norm_a(obs))[0], model_b.actor.distribution_params(norm_b(obs))[0]
    )
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def _flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}/{i}"))
    else:
        out[prefix] = tree
    return out


def test_resume_continues_from_the_saved_step(tmp_path):
    config = tiny_config(total_steps=64)
    train(config, tmp_path, progress=False)
    first = _rows(tmp_path)
    assert [r["step"] for r in first] == [16, 32, 48, 64]
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["step"] == 64 and saved["iteration"] == 4
    # The run is "killed" and restarted with a larger budget: it continues at step 64.
    train(tiny_config(total_steps=112), tmp_path, progress=False)
    steps = [r["step"] for r in _rows(tmp_path)]
    assert steps == [16, 32, 48, 64, 80, 96, 112]
    resumed = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert resumed["step"] == 112 and resumed["iteration"] == 7
    # A finished run restarted with the same budget does nothing more.
    train(tiny_config(total_steps=112), tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 7


def test_resume_drops_rows_logged_after_the_last_checkpoint(tmp_path):
    """A run killed between checkpoints logged iterations it will redo: the resumed log has each step once."""
    train(tiny_config(total_steps=48, checkpoint_every_steps=48), tmp_path, progress=False)  # checkpoint at 48
    with open(tmp_path / "metrics.jsonl", "a") as handle:  # as if killed after logging step 64
        handle.write(json.dumps({"step": 64, "iteration": 4}) + "\n")
    train(tiny_config(total_steps=80, checkpoint_every_steps=48), tmp_path, progress=False)
    assert [r["step"] for r in _rows(tmp_path)] == [16, 32, 48, 64, 80]
    assert _rows(tmp_path)[3].get("episode_return_basic", "missing") != "missing"  # the real row, not the stale one


def test_resume_survives_a_metrics_line_cut_by_a_kill(tmp_path):
    """A kill mid-write leaves half a JSON line at the end of metrics.jsonl: the run must still resume."""
    train(tiny_config(total_steps=48), tmp_path, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 64, "iteration": 4, "episode_ret')  # no closing brace, no newline
    train(tiny_config(total_steps=80), tmp_path, progress=False)
    assert [r["step"] for r in _rows(tmp_path)] == [16, 32, 48, 64, 80]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not an Exception, so no handler swallows it)."""


def test_kill_between_best_and_last_writes_never_loses_the_best_policy(tmp_path, monkeypatch):
    """best.pt and last.pt are two files. Killed after one of them, the resumed run must not let a
    worse policy replace best.pt. Scores are scripted: 10, 30 (kill after its first write), then the
    redone iteration scores 20 < 30: it must not become best.pt."""
    scores = iter([10.0, 30.0, 20.0, 5.0, 5.0])
    monkeypatch.setattr(train_module.EpisodeStats, "means", lambda self: {"episode_return_basic": next(scores)})
    real_save = train_module.save_atomic
    writes = []

    def save_then_die(payload, path):
        real_save(payload, path)
        writes.append((path.name, payload["step"]))
        if payload["step"] == 32:
            raise _Killed  # killed right after the first of the two checkpoint writes at step 32

    monkeypatch.setattr(train_module, "save_atomic", save_then_die)
    with pytest.raises(_Killed):
        train(tiny_config(total_steps=64), tmp_path, progress=False)
    monkeypatch.setattr(train_module, "save_atomic", real_save)
    train(tiny_config(total_steps=64), tmp_path, progress=False)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert (best["best_score"], best["step"]) == (30.0, 32)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (last["step"], last["best_score"], last["best_step"]) == (64, 30.0, 32)
    assert [s["start_step"] for s in last["training_sessions"]] == [0, 16]  # two sessions: killed, resumed


def test_checkpoints_are_spaced_in_env_steps(tmp_path, monkeypatch):
    """checkpoint_every_steps counts env steps: with 16 steps per iteration and a spacing of 40, the
    checkpoints fall on the iterations that cross 40 and 80, and on the last one."""
    saved = []
    real_save = train_module.save_atomic

    def recording_save(payload, path):
        saved.append(payload["step"])
        real_save(payload, path)

    monkeypatch.setattr(train_module, "save_atomic", recording_save)
    train(tiny_config(total_steps=96, checkpoint_every_steps=40), tmp_path, progress=False)
    assert sorted(set(saved)) == [48, 80, 96]
    legacy = load_config("ant", "soft", {"checkpoint_every": 2})  # the old key, in iterations
    assert legacy.checkpoint_every_steps == 2 * 128 * 64


def test_a_second_trainer_on_a_locked_run_folder_is_refused_until_the_holder_dies(tmp_path):
    """Two sweeps over the same runs must not train into one folder; a killed holder frees it."""
    import platform
    import signal
    import subprocess
    import sys

    # The holder does what rpg_control.run_lock does: flock <run_dir>/.lock and write pid/host into it.
    holder_code = (
        "import fcntl, json, os, platform, sys\n"
        f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, json.dumps({'pid': os.getpid(), 'host': platform.node(), 'since': 'now'}).encode())\n"
        "print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is in use by") as refused:
            train(tiny_config(total_steps=16), tmp_path, progress=False)
        message = str(refused.value)
        assert f"pid {holder.pid} on host {platform.node()}" in message and "\n" not in message
        assert not (tmp_path / "metrics.jsonl").exists()  # refused before any work
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    train(tiny_config(total_steps=16), tmp_path, progress=False)  # the dead holder's lock is gone
    assert [r["step"] for r in _rows(tmp_path)] == [16]


def test_checkpoint_record_names_the_step_and_the_selection_metric(tmp_path):
    from rpg_control.reproduce.runner import checkpoint_record

    train(
        tiny_config(env="halfcheetah", num_envs=1, steps_per_env=500, total_steps=2000, checkpoint_every_steps=1000),
        tmp_path,
        progress=False,
    )
    rows = {r["step"]: r for r in _rows(tmp_path)}
    last = checkpoint_record(tmp_path / "checkpoints" / "last.pt", "last")
    best = checkpoint_record(tmp_path / "checkpoints" / "best.pt", "best")
    assert last["checkpoint_step"] == 2000 and last["selection_metric"] == "episode_return_basic"
    assert last["selection_value"] == rows[2000]["episode_return_basic"]
    assert best["checkpoint_step"] in (1000, 2000) and best["selection_setting"] == "task"
    assert best["selection_value"] == rows[best["checkpoint_step"]]["episode_return_basic"]
    assert best["selection_value"] == max(rows[s]["episode_return_basic"] for s in (1000, 2000))


@pytest.mark.parametrize(
    "setting, key",
    [
        ("task", "episode_return_total"),
        ("basic", "episode_return_basic"),
        ("addon", "episode_return_addon"),
        ("total", "episode_return_total"),
    ],
)
def test_selection_metric_is_a_config_field(setting, key):
    assert load_config("halfcheetah", "greedy", {"prior": __file__, "selection_metric": setting}).selection_key() == key
    with pytest.raises(ConfigError, match="unknown selection_metric 'best'"):
        load_config("hopper", "soft", {"selection_metric": "best"})


def test_resume_refuses_a_different_run(tmp_path):
    train(tiny_config(total_steps=16), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different run"):
        train(tiny_config("end", total_steps=32), tmp_path, progress=False)


def test_metrics_rows_carry_every_reward_component(tmp_path):
    train(
        load_config("halfcheetah", "soft", {**TINY, "num_envs": 1, "steps_per_env": 500, "total_steps": 1000}),
        tmp_path,
        progress=False,
    )
    row = _rows(tmp_path)[-1]
    for key in ("step", "episode_return_total", "episode_return_basic", "episode_return_addon", "addon_metric"):
        assert row[key] is not None, key
    assert row["episode_return_total"] == pytest.approx(row["episode_return_basic"] + row["episode_return_addon"])
    assert row["addon_metric"] == pytest.approx(-row["episode_return_addon"] / 1000)  # mean |θ| = −r_R / length
    assert (tmp_path / "checkpoints" / "best.pt").exists() and list((tmp_path / "tb").iterdir())


def test_evaluate_reports_mean_and_std(prior_checkpoint):
    report = evaluate(prior_checkpoint, episodes=3, seed=1)
    assert report["episodes"] == 3 and report["env"] == "hopper"
    for key in ("total", "basic", "addon", "addon_metric"):
        assert set(report[key]) == {"mean", "std"}
    assert report["total"]["mean"] == pytest.approx(report["basic"]["mean"] + report["addon"]["mean"])
    again = evaluate(prior_checkpoint, episodes=3, seed=1)
    again.pop("provenance"), report.pop("provenance")  # its timestamp may tick between the two calls
    assert again == report  # the evaluation itself is deterministic


def test_mismatched_prior_is_rejected_before_simulation(prior_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="trained on hopper, not halfcheetah"):
        load_prior(load_config("halfcheetah", "residual", {"prior": str(prior_checkpoint)}))
    payload = load_checkpoint(prior_checkpoint)
    payload["env"]["obs_dim"] = 12
    bad = tmp_path / "bad.pt"
    save_atomic(payload, bad)
    with pytest.raises(ConfigError, match="obs/act sizes"):
        load_prior(load_config("hopper", "residual", {"prior": str(bad)}))
    with pytest.raises(ConfigError, match="actor does not match"):
        load_prior(load_config("hopper", "residual", {"prior": str(prior_checkpoint), "actor_hidden": [8]}))
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_prior(load_config("hopper", "residual", {"prior": str(junk)}))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--env", "walker"], "unknown env 'walker'"),
        (["train", "--env", "hopper", "--variant", "sac"], "unknown variant 'sac'"),
        (["train", "--env", "hopper", "--alpha", "-1"], "alpha must be a finite number >= 0"),
        (["train", "--env", "hopper", "--variant", "kl"], "customizes a prior"),
        (["customize", "--prior", "/no/such.pt"], "checkpoint not found"),
        (["train", "--env", "hopper", "--set", "bogus=1"], "unknown config key"),
        (["eval", "/no/such.pt"], "checkpoint not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert cli_main(argv + (["--run-dir", str(tmp_path)] if argv[0] != "eval" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("rpg control: error:")
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing ran


def test_cli_customize_rejects_a_prior_of_another_env(prior_checkpoint, capsys, tmp_path):
    assert cli_main(["customize", "--prior", str(prior_checkpoint), "--env", "ant", "--run-dir", str(tmp_path)]) == 2
    assert "trained on hopper, not ant" in capsys.readouterr().err


def test_exported_policy_evaluates_and_serves_as_a_prior(prior_checkpoint, tmp_path):
    from rpg_control.checkpoint import export_policy

    slim = export_policy(prior_checkpoint, tmp_path / "slim.pt")
    payload = load_checkpoint(slim)
    assert "optimizer" not in payload and "rng" not in payload
    ignored = {"checkpoint": "", "provenance": None}  # the path, and the evaluation's timestamp (may tick)
    assert evaluate(slim, episodes=2, seed=1) | ignored == evaluate(prior_checkpoint, episodes=2, seed=1) | ignored
    prior = load_prior(tiny_config("kl", prior=str(slim)))
    original = load_prior(tiny_config("kl", prior=str(prior_checkpoint)))
    obs, actions = torch.randn(4, 11), torch.randn(4, 3)
    assert torch.equal(prior.log_prob(obs, actions), original.log_prob(obs, actions))


def test_state_dependent_std_trains_resumes_and_evaluates(tmp_path):
    """Table III's ablation: the std comes from a head of the actor instead of a global parameter."""
    config = tiny_config(std_type="state", total_steps=32)
    train(config, tmp_path, progress=False)
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert not any(k.endswith("log_std") for k in payload["model"])  # no global std parameter
    model, normalizer = build_model(config)
    model.load_state_dict(payload["model"])
    _, log_std = model.actor.distribution_params(torch.randn(6, 11))
    assert log_std.shape == (6, 3) and not torch.allclose(log_std[0], log_std[1])  # it depends on the state
    train(tiny_config(std_type="state", total_steps=48), tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 48
    assert evaluate(tmp_path / "checkpoints" / "last.pt", episodes=2)["episodes"] == 2
