"""The reproduction's planner, resume and outputs, driven by a fake runner (no simulation).

The fake runner trains in chunks and writes a checkpoint after each one, like the real trainer;
it can SIGKILL its own process mid-run, which kills the whole sweep as a real kill would.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rpg.utils.atomic import write_json_atomic
from rpg_control.reproduce import paper, tables
from rpg_control.reproduce.plan import (
    RunSpec,
    customization_runs,
    make_scale,
    prior_candidate_runs,
    table1_runs,
    table3_runs,
)

TESTS_DIR = Path(__file__).resolve().parents[1]  # tests/: this module is control.test_reproduce
REPO = TESTS_DIR.parent
FAKE_RUNNER = "control.test_reproduce:fake_runner"
CHUNKS = 4
VARIANT_SCORE = {
    "none": 10.0,
    "end": 20.0,
    "repeat": 5.0,
    "soft": 30.0,
    "full": 40.0,
    "greedy": -50.0,
    "kl": 25.0,
    "residual": 35.0,
    "prior": 28.0,
}


def fake_runner(spec: RunSpec, run_dir: Path, progress: bool = True) -> dict:
    """Deterministic stand-in for train + evaluate. ``FAKE_LOG`` collects (run_id, resumed step);
    ``FAKE_KILL_AT=N`` SIGKILLs the process halfway through the N-th call it logs."""
    log = Path(os.environ["FAKE_LOG"])
    checkpoint = run_dir / "checkpoints" / "last.pt"
    resumed = json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0
    with open(log, "a") as handle:
        handle.write(json.dumps({"run_id": spec.run_id, "resumed": resumed}) + "\n")
    calls = len(log.read_text().splitlines())
    if spec.prior is not None:
        assert Path(spec.prior).is_file(), spec.prior
    worker_root = os.environ.get("FAKE_WORKER_ROOT")
    if worker_root:  # a worker without the driver's files: everything it touches lies under its own root
        assert str(run_dir).startswith(worker_root) and os.getcwd() != os.environ["FAKE_DRIVER_CWD"], run_dir
        assert spec.prior is None or spec.prior.startswith(worker_root), spec.prior
    curve = []
    for chunk in range(1, CHUNKS + 1 if spec.variant != "prior" else 1):
        step = spec.steps * chunk // CHUNKS
        if step <= resumed:
            continue
        if chunk == CHUNKS // 2 + 1 and calls == int(os.environ.get("FAKE_KILL_AT", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        write_json_atomic(checkpoint, {"step": step})
    score = VARIANT_SCORE[spec.variant] + spec.seed - 3.0 * spec.state_std
    for chunk in range(1, CHUNKS + 1):
        curve.append(
            {
                "step": spec.steps * chunk // CHUNKS,
                "episode_return_total": score * chunk / CHUNKS,
                "episode_return_basic": score * chunk / CHUNKS - 1.0,
                "episode_return_addon": 1.0,
                "addon_metric": 0.5,
            }
        )
    if spec.variant != "prior":  # the prior row only evaluates the prior checkpoint
        (run_dir / "checkpoints" / "best.pt").write_bytes(f"weights of {spec.run_id}".encode())
    figures = {
        key: {"mean": score + offset, "std": 1.0 + spec.seed}
        for key, offset in (("total", 0.0), ("basic", -1.0), ("addon", 1.0), ("addon_metric", 0.0))
    }
    shifted = lambda delta: {k: {"mean": v["mean"] + delta, "std": v["std"]} for k, v in figures.items()}  # noqa: E731
    evals = {
        "best": figures,
        "last": shifted(-2.0),
        "best_stochastic": shifted(100.0),
        "last_stochastic": shifted(98.0),
    }
    record = {
        "checkpoint_step": spec.steps if spec.variant != "prior" else 0,
        "selection_metric": "episode_return_total",
        "selection_value": score,
    }
    returned = {"best_checkpoint": (run_dir / "checkpoints" / "best.pt").read_bytes()} if spec.variant == "soft" else {}
    return {
        **returned,
        "eval": evals,
        "evaluated_checkpoints": {"best": record, "last": record},
        "trained_steps": spec.steps,
        "resumed_from_step": resumed,
        "curve": curve,
        "checkpoints": {"best": str(run_dir / "checkpoints" / "best.pt"), "last": str(checkpoint)},
    }


def config_fingerprint(spec: RunSpec) -> str | None:
    """The fake trainer's 'config': FAKE_CONFIG stands for the YAML defaults of the day."""
    return None if spec.variant == "prior" else os.environ.get("FAKE_CONFIG") or None


def reproduce(
    tmp_path: Path, *args: str, kill_at: int = 0, check: bool = False, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        FAKE_LOG=str(tmp_path / "calls.jsonl"),
        FAKE_KILL_AT=str(kill_at),
        **(env or {}),
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    command = [
        sys.executable,
        "-m",
        "rpg_control.reproduce.cli",
        *args,
        "--results",
        str(tmp_path / "results"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--runner",
        FAKE_RUNNER,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def reproduce_here(tmp_path: Path, monkeypatch, *args: str) -> int:
    """The same command in this process (cheaper than a subprocess when nothing gets killed)."""
    from rpg_control.reproduce.cli import main

    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_KILL_AT", "0")
    return main(
        [*args, "--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"), "--runner", FAKE_RUNNER]
    )


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


TABLE2_QUICK = (
    "--table",
    "2",
    "--envs",
    "halfcheetah",
    "--scale",
    "quick",
    "--steps",
    "400",
    "--seeds",
    "2",
    "--episodes",
    "3",
)


def test_killed_sweep_resumes_skips_finished_runs_and_writes_nothing_partial(tmp_path, monkeypatch):
    killed = reproduce(tmp_path, *TABLE2_QUICK, kill_at=4)
    assert killed.returncode == -signal.SIGKILL
    results = tmp_path / "results" / "steps400-seeds2-episodes3"
    finished = sorted(results.rglob("*.json"))
    first_calls = calls(tmp_path)
    # stage 1: the two Soft PPO seeds; the prior is picked; stage 2 starts; its 2nd run is killed
    assert [c["run_id"].split("/")[1] for c in first_calls] == ["soft", "soft", "full", "full"]
    run_results = [p for p in finished if "/run_results/" in str(p)]
    assert len(run_results) == 3 and all(json.loads(p.read_text())["eval"] for p in run_results)
    assert not [p for p in (tmp_path / "results").rglob("*") if p.name.endswith(".tmp")]
    killed_id = first_calls[-1]["run_id"]
    assert not (results / "run_results" / f"{killed_id}.json").exists()
    assert (
        json.loads((tmp_path / "runs" / results.name / killed_id / "checkpoints" / "last.pt").read_text())["step"]
        == 200
    )

    assert reproduce_here(tmp_path, monkeypatch, *TABLE2_QUICK) == 0
    second_calls = calls(tmp_path)[len(first_calls) :]
    rerun_ids = [c["run_id"] for c in second_calls]
    assert not set(rerun_ids) & {c["run_id"] for c in first_calls[:3]}  # finished runs were skipped
    assert second_calls[0] == {"run_id": killed_id, "resumed": 200}  # the killed run resumed from its checkpoint
    assert len(rerun_ids) == len(set(rerun_ids)) == 1 + 1 + 3 * 2  # killed run, prior row, Greedy/KL/Residual x 2
    all_results = list((results / "run_results").rglob("*.json"))
    assert len(all_results) == 2 + 2 + 1 + 6
    for path in all_results:
        result = json.loads(path.read_text())
        expected = {"config", "seed", "steps", "provenance", "wall_time_s", "eval", "command", "evaluated_checkpoints"}
        assert expected <= set(result)
        assert set(result["provenance"]) == {"training", "evaluation"}
        evaluation = result["provenance"]["evaluation"]
        assert {"commit", "code_dirty", "versions"} <= set(evaluation) and evaluation["machine"]["cpu"]
        trained = result["spec"]["variant"] != "prior"
        assert result["evaluated_checkpoints"]["best"]["checkpoint_step"] == (result["steps"] if trained else 0)
        assert result["run_id"] == str(path.relative_to(results / "run_results"))[: -len(".json")]

    # the prior is the better Soft PPO seed (seed 1 scores higher in the fake), copied next to the table
    prior = json.loads((results / "priors" / "halfcheetah.json").read_text())
    assert prior["source_run"].endswith("seed1")
    assert (results / "priors" / "halfcheetah.pt").read_bytes() == f"weights of {prior['source_run']}".encode()
    markdown = (results / "table2.md").read_text()
    assert "Scale: `steps400-seeds2-episodes3`" in markdown and "5357.0 ± 377.8" in markdown
    # pooled over seeds 0 and 1 (fake: 35 ± 1 and 36 ± 2 → 35.5 ± sqrt(2.75)), bold: best total below the Full Policy
    assert (
        "| Residual PPO | ours, best ckpt | **35.5 ± 1.7** | 34.5 ± 1.7 | 35.50 ± 1.66 | 36.5 ± 1.7 | 400, 400 |"
        in markdown
    )
    assert "|  | ours, last ckpt | **33.5 ± 1.7** | 32.5 ± 1.7 | 33.50 ± 1.66 | 34.5 ± 1.7 | 400, 400 |" in markdown
    stochastic = (results / "table2_stochastic.md").read_text()
    assert "stochastic evaluation" in stochastic
    assert "| Residual PPO | ours, best ckpt | **135.5 ± 1.7** |" in stochastic
    for png in ("table2_curves.png", "table2_tradeoff.png", "table2_tradeoff_stochastic.png"):
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a third run has nothing to do
    assert reproduce_here(tmp_path, monkeypatch, *TABLE2_QUICK) == 0
    assert len(calls(tmp_path)) == len(first_calls) + len(second_calls)


def test_changed_trainer_config_plans_new_runs_and_a_new_prior(tmp_path, monkeypatch):
    args = ("--table", "2", "--envs", "ant", "--steps", "8", "--seeds", "1", "--episodes", "1")
    monkeypatch.setenv("FAKE_CONFIG", "aaaa")
    assert reproduce_here(tmp_path, monkeypatch, *args) == 0
    assert reproduce_here(tmp_path, monkeypatch, *args) == 0  # nothing to do
    first = calls(tmp_path)
    assert len(first) == 6 and all("/cfg-aaaa/" in c["run_id"] for c in first if "/prior/" not in c["run_id"])
    monkeypatch.setenv("FAKE_CONFIG", "bbbb")  # the trainer's defaults changed: nothing may be reused
    assert reproduce_here(tmp_path, monkeypatch, *args) == 0
    second = calls(tmp_path)[len(first) :]
    assert len(second) == 6 and all("/cfg-bbbb/" in c["run_id"] for c in second if "/prior/" not in c["run_id"])
    prior = json.loads((tmp_path / "results" / "steps8-seeds1-episodes1" / "priors" / "ant.json").read_text())
    assert prior["source_run"] == "ant/soft/cfg-bbbb/8steps-1episodes/seed0"


def test_real_runner_config_fingerprint_ignores_seed_and_steps():
    pytest.importorskip("gymnasium")
    from rpg_control.reproduce.runner import config_fingerprint

    soft = [config_fingerprint(RunSpec("hopper", "soft", seed, steps, 1)) for seed, steps in ((0, 10), (3, 99))]
    assert soft[0] == soft[1]
    assert config_fingerprint(RunSpec("hopper", "soft", 0, 10, 1, state_std=True)) != soft[0]
    assert config_fingerprint(RunSpec("hopper", "repeat", 0, 10, 1)) != soft[0]


@pytest.mark.slow
def test_parallel_processes_finish_every_run(tmp_path):
    reproduce(
        tmp_path,
        "--table",
        "3",
        "--envs",
        "hopper",
        "--steps",
        "8",
        "--seeds",
        "2",
        "--episodes",
        "1",
        "--jobs",
        "2",
        check=True,
    )
    results = tmp_path / "results" / "steps8-seeds2-episodes1"
    assert len(list((results / "run_results").rglob("*.json"))) == 4
    assert "| Hopper | ours | **27.5 ± 1.7** | 24.5 ± 1.7 |" in (results / "table3.md").read_text()


def test_atomic_write_leaves_old_file_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"v": 1})

    def crash(_fd):
        raise KeyboardInterrupt  # a kill between writing the bytes and the rename

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_plans_share_runs_and_ids_are_unique():
    scale = make_scale("quick", steps=1000, seeds=3, episodes=2)
    table1 = table1_runs(list(paper.ENVS), scale)
    assert len(table1) == len({s.run_id for s in table1}) == 3 * 4 * 3
    table3 = table3_runs(["hopper"], scale)
    global_std = {s.run_id for s in table3 if not s.state_std}
    assert global_std == {s.run_id for s in table1 if s.env == "hopper" and s.variant == "soft"}
    assert global_std == {s.run_id for s in prior_candidate_runs("hopper", scale)}
    runs_a = customization_runs("ant", scale, "a.pt", "aaaa")
    runs_b = customization_runs("ant", scale, "b.pt", "bbbb")
    assert not {s.run_id for s in runs_a} & {s.run_id for s in runs_b}  # another prior, other runs
    assert runs_a[0].episodes == scale.seeds * scale.episodes  # the prior row pools as many episodes as the others
    assert make_scale("quick").label == "quick" and scale.label == "steps1000-seeds3-episodes2"
    with pytest.raises(ValueError):
        RunSpec("ant", "residual", 0, 10, 1)  # a customization without a prior


def test_pooled_figures_equal_the_statistics_of_all_episodes():
    rng = np.random.default_rng(0)
    runs = [rng.normal(loc, scale, size) for loc, scale, size in ((3.0, 1.0, 5), (-1.0, 2.0, 7), (10.0, 0.5, 3))]
    parts = [({"mean": r.mean(), "std": r.std()}, len(r)) for r in runs]
    mean, std = tables.pooled(parts)
    everything = np.concatenate(runs)
    assert math.isclose(mean, everything.mean(), rel_tol=1e-12)
    assert math.isclose(std, everything.std(), rel_tol=1e-12)


def test_verdicts_test_the_gap_against_its_uncertainty_over_seeds():
    """Welch's t on the seeds' means: d = 3 with se = 0.5 and 2 + 2 seeds needs |d| > 12.7 · se."""
    from rpg_control.reproduce.verdicts import Cell, compare, t_quantile

    a, b = Cell((10.0, 11.0)), Cell((7.5, 8.0 - 0.5))  # means 10.5 vs 7.5; s² = 0.5 and 0 -> se = 0.5
    result = compare(a, b)
    assert (result.difference, result.standard_error) == (3.0, 0.5)
    assert result.verdict == "inconclusive" and result.threshold == pytest.approx(12.706 * 0.5)  # Welch dof = 1
    five = compare(Cell((10.0, 11.0, 10.5, 10.0, 11.0)), Cell((7.0, 8.0, 7.5, 7.0, 8.0)))
    assert five.verdict == "reproduced"  # d = 3, se = 0.32, dof = 8: t = 2.306
    assert compare(Cell((7.0, 8.0, 7.5, 7.0, 8.0)), Cell((10.0, 11.0, 10.5, 10.0, 11.0))).verdict == "opposite"
    assert compare(Cell((10.0,)), Cell((0.0,))).verdict == "inconclusive"  # one seed each: no spread to test
    # a single fixed checkpoint (the prior) adds its evaluation's standard error and no degrees of freedom
    fixed = compare(Cell((10.0, 11.0, 10.5, 10.0, 11.0)), Cell((7.5,), fixed_se=0.1))
    variances = (0.25 / 5, 0.1**2)  # seeds' variance / n; the fixed cell's squared standard error
    dof = sum(variances) ** 2 / (variances[0] ** 2 / 4)  # Welch-Satterthwaite: 5.76, rounded down to 5
    assert fixed.verdict == "reproduced"
    assert fixed.threshold == pytest.approx(t_quantile(dof) * math.sqrt(sum(variances)))
    assert t_quantile(dof) == 2.571
    assert compare(None, b) is None


def test_table2_claims_and_rows_use_every_seed_and_both_checkpoints():
    scale = make_scale("quick", steps=10, seeds=2, episodes=4)
    prior = customization_runs("hopper", scale, "p.pt", "abcd")
    cells = {("hopper", spec.variant): [] for spec in prior}
    for spec in prior:
        cells[("hopper", spec.variant)].append(spec)

    def result(spec, total, step):
        figure = {"mean": total, "std": 1.0}
        evals = {key: dict.fromkeys(("total", "basic", "addon", "addon_metric"), figure) for key in ("best", "last")}
        return {
            "spec": spec.to_dict(),
            "seed": spec.seed,
            "eval": evals,
            "trained_steps": 10,
            "evaluated_checkpoints": {"best": {"checkpoint_step": step}} if step else {},
        }

    totals = {"prior": [5.0], "greedy": [0.0, 1.0], "kl": [90.0, 110.0], "residual": [100.0, 101.0]}
    results = {spec.run_id: result(spec, totals[spec.variant][spec.seed], 4 if spec.seed else None) for spec in prior}
    greedy_best, greedy_last, kl_best, _, addon_best, _ = tables.table2_claims("hopper", cells, results)
    assert greedy_best.startswith(
        "Residual PPO's total reward above Greedy PPO's (best checkpoints): **reproduced** "
        "— Residual 100.5 vs Greedy PPO 0.5 (d = +100.0, se = 0.7, needs |d| > 3.0; seeds 2 vs 2)"
    )
    assert "(paper: 4401.4 vs 3714.5)" in greedy_best and "(last checkpoints)" in greedy_last
    assert "**inconclusive** — Residual 100.5 vs KL PPO 100.0" in kl_best
    assert "seeds 2 vs one checkpoint" in addon_best
    assert tables.checkpoint_steps(cells[("hopper", "greedy")], results, "best") == "not recorded, 4"
    assert tables.checkpoint_steps(cells[("hopper", "greedy")], results, "last") == "10, 10"  # trained_steps


def test_bad_input_is_one_line_before_any_run(tmp_path, monkeypatch, capsys):
    for args, message in (
        (("--table", "1", "--envs", "walker"), "unknown env(s) walker"),
        (("--table", "2", "--prior", "hopper=/nonexistent.pt"), "no such checkpoint file"),
        (("--table", "1", "--jobs", "0"), "--jobs must be >= 1"),
        (("--table", "1", "--steps", "-5"), "--steps must be >= 1"),
    ):
        assert reproduce_here(tmp_path, monkeypatch, *args) == 2
        stderr = capsys.readouterr().err
        assert stderr.strip().count("\n") == 0 and message in stderr, stderr
    assert not (tmp_path / "calls.jsonl").exists()


def test_a_second_sweep_on_a_locked_run_is_refused_naming_the_holder(tmp_path, monkeypatch, capsys):
    """A run folder held by another live sweep fails in one line naming it; the other runs go on."""
    import platform

    args = (
        "--table",
        "1",
        "--variants",
        "soft",
        "--envs",
        "hopper",
        "--steps",
        "40",
        "--seeds",
        "2",
        "--episodes",
        "1",
    )
    locked = tmp_path / "runs" / "steps40-seeds2-episodes1" / "hopper" / "soft" / "40steps-1episodes" / "seed1"
    locked.mkdir(parents=True)
    holder_code = (  # what rpg_control.run_lock does in the first sweep's worker
        "import fcntl, json, os, platform, sys\n"
        f"fd = os.open({str(locked / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, json.dumps({'pid': os.getpid(), 'host': platform.node(), 'since': 'now'}).encode())\n"
        "print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert reproduce_here(tmp_path, monkeypatch, *args) == 1
        failed = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
        assert failed == [
            (
                f"reproduce: FAILED hopper/soft/40steps-1episodes/seed1: RunLockedError: run folder {locked} is in use "
                f"by pid {holder.pid} on host {platform.node()} (since now); wait for that run or stop it "
                "(its lock goes with its process)"
            )
        ]
        assert [c["run_id"] for c in calls(tmp_path)] == ["hopper/soft/40steps-1episodes/seed0"]  # only Soft PPO runs
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert reproduce_here(tmp_path, monkeypatch, *args) == 0  # the holder died: its lock went with it
    assert [c["run_id"] for c in calls(tmp_path)][1:] == ["hopper/soft/40steps-1episodes/seed1"]


def test_paper_scale_table2_plan_shares_the_soft_ppo_runs_of_table1(tmp_path, monkeypatch, capsys):
    paper_plan = ("--table", "2", "--envs", "halfcheetah", "--scale", "paper", "--dry-run")
    assert reproduce_here(tmp_path, monkeypatch, *paper_plan) == 0
    plan = capsys.readouterr().out
    assert f"results (tables, result JSONs): {tmp_path / 'results' / 'paper'}" in plan
    assert "the prior's evaluation and 15 customization runs" in plan
    soft = [line.split()[-1] for line in plan.splitlines() if "/soft/" in line]
    assert soft == [f"halfcheetah/soft/5000000steps-100episodes/seed{s}" for s in range(5)]
    assert len([line for line in plan.splitlines() if "/full/" in line]) == 5
    assert (
        reproduce_here(
            tmp_path,
            monkeypatch,
            "--table",
            "1",
            "--variants",
            "soft",
            "--envs",
            "halfcheetah",
            "--scale",
            "paper",
            "--dry-run",
        )
        == 0
    )
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines() if "] " in line] == soft  # same runs
    assert reproduce_here(tmp_path, monkeypatch, "--table", "2", "--variants", "soft", "--dry-run") == 2
    assert "--variants selects Table I columns" in capsys.readouterr().err


def test_the_docs_page_holds_the_committed_tables_verdicts():
    """docs/mujoco_reproduction.md's verdict lines are the tables' own (rerun claims_page after --report-only)."""
    from rpg_control.reproduce import claims_page

    assert claims_page.main(["--check"]) == 0
    assert "**Verdicts, mean action**" in claims_page.generated_text()


@pytest.mark.slow
def test_ray_backend_dispatches_runs(tmp_path):
    pytest.importorskip("ray")
    reproduce(
        tmp_path,
        "--table",
        "3",
        "--envs",
        "ant",
        "--steps",
        "8",
        "--seeds",
        "1",
        "--episodes",
        "1",
        "--jobs",
        "2",
        "--backend",
        "ray",
        check=True,
    )
    results = tmp_path / "results" / "steps8-seeds1-episodes1"
    assert {json.loads(p.read_text())["run_id"] for p in (results / "run_results").rglob("*.json")} == {
        "ant/soft/8steps-1episodes/seed0",
        "ant/soft-state-std/8steps-1episodes/seed0",
    }
    assert len(calls(tmp_path)) == 2


@pytest.mark.slow
def test_ray_without_a_shared_folder_runs_a_table2_plan_that_ships_a_prior(tmp_path):
    """Ray workers keep their own run folders (here: another directory, another working directory);
    the driver, started outside the repository, picks Table II's prior from the bytes a Soft PPO task
    returned and ships them to the customization tasks."""
    pytest.importorskip("ray")
    driver_cwd, worker_root = tmp_path / "driver_cwd", tmp_path / "worker_runs"
    driver_cwd.mkdir()
    done = reproduce(
        tmp_path,
        "--table",
        "2",
        "--envs",
        "halfcheetah",
        "--steps",
        "8",
        "--seeds",
        "1",
        "--episodes",
        "1",
        "--jobs",
        "2",
        "--backend",
        "ray",
        "--worker-runs-dir",
        str(worker_root),
        cwd=driver_cwd,
        env={"FAKE_WORKER_ROOT": str(worker_root), "FAKE_DRIVER_CWD": str(driver_cwd)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "results" / "steps8-seeds1-episodes1"
    ids = {json.loads(p.read_text())["run_id"].split("/")[1] for p in (results / "run_results").rglob("*.json")}
    assert ids == {"soft", "full", "prior", "greedy", "kl", "residual"}
    prior = json.loads((results / "priors" / "halfcheetah.json").read_text())
    assert (results / "priors" / "halfcheetah.pt").read_bytes() == f"weights of {prior['source_run']}".encode()
    driver_runs = tmp_path / "runs"
    assert not list(driver_runs.rglob("last.pt"))  # the driver never saw a worker's run folder
    assert len(list(worker_root.rglob("last.pt"))) == 5  # soft, full, greedy, kl, residual trained there
    assert len(list(worker_root.rglob("prior.pt"))) == 4  # the prior row and 3 customizations got it by value


def _progress_run(env: str, variant: str, seed: int, seconds: float, rate: float | None) -> dict:
    return {
        "spec": {"env": env, "variant": variant, "seed": seed},
        "provenance": {"training": {"wall_time_s": seconds, "steps_per_second": rate}},
    }


def test_progress_rows_count_seeds_hours_and_rates_per_cell():
    from rpg_control.reproduce.progress import progress_markdown, progress_rows

    runs = [
        _progress_run("halfcheetah", "soft", 1, 3600.0, 3000.0),
        _progress_run("halfcheetah", "soft", 0, 1800.0, 1000.0),
        _progress_run("halfcheetah", "soft", 2, 1800.0, 1500.0),  # median 1,500; mean 1,833
        _progress_run("hopper", "kl", 0, 900.0, None),  # not in the stage: listed after it
    ]
    stage = {"halfcheetah": ("soft", "greedy"), "ant": ("soft",)}
    rows = progress_rows(runs, seeds=5, stage=stage)
    assert [(r["env"], r["variant"], r["done"], r["seeds"]) for r in rows] == [
        ("halfcheetah", "soft", 3, [0, 1, 2]),
        ("halfcheetah", "greedy", 0, []),
        ("ant", "soft", 0, []),
        ("hopper", "kl", 1, [0]),
    ]
    assert rows[0]["wall_hours"] == 2.0 and rows[0]["rates"] == [1000.0, 1500.0, 3000.0]
    page = progress_markdown(rows, "paper", stage)
    assert "| halfcheetah | soft | 3/5 (0, 1, 2) | 2.00 | 1,500 (1,000–3,000) |" in page
    assert "| halfcheetah | greedy | 0/5 (none) | 0.00 | — |" in page
    assert "| hopper | kl | 1/5 (0) | 0.25 | — |" in page
    assert page.rstrip().endswith("| **stage 1** | | **3/15** | **2.00** | |")  # off-stage runs not counted


def test_progress_refuses_two_configurations_in_one_cell():
    from rpg_control.reproduce.progress import progress_rows

    runs = [_progress_run("ant", "soft", 0, 1.0, 1.0), _progress_run("ant", "soft", 1, 1.0, 1.0)]
    runs[1]["spec"]["config_sha"] = "another"
    with pytest.raises(ValueError, match="ant/soft: runs of 2 configurations"):
        progress_rows(runs, seeds=5)


def test_the_committed_progress_page_is_current():
    """results/mujoco/paper/progress.md is its result JSONs' (rerun the module after committing a run)."""
    from rpg_control.reproduce import progress

    assert progress.main(["--check"]) == 0


def test_collect_copies_what_the_checkout_lacks_and_refuses_a_differing_file(tmp_path):
    from rpg_control.reproduce.collect import RESULTS, collect

    sweep, here = tmp_path / "sweep", tmp_path / "here"
    files = {
        "run_results/halfcheetah/kl/seed0.json": b'{"a": 1}',  # both have it, equal: left alone
        "run_results/halfcheetah/kl/seed1.json": b'{"b": 2}',  # new: copied
        "priors/hopper.pt": b"\x00prior",  # new: copied
    }
    for rel, data in files.items():
        (sweep / RESULTS / rel).parent.mkdir(parents=True, exist_ok=True)
        (sweep / RESULTS / rel).write_bytes(data)
    (sweep / RESULTS.parent / "paper_runs_not_collected.txt").write_text("x")
    (here / RESULTS / "run_results/halfcheetah/kl").mkdir(parents=True)
    (here / RESULTS / "run_results/halfcheetah/kl/seed0.json").write_bytes(b'{"a": 1}')
    assert collect(sweep, here) == [RESULTS / "priors/hopper.pt", RESULTS / "run_results/halfcheetah/kl/seed1.json"]
    assert all((here / RESULTS / rel).read_bytes() == data for rel, data in files.items())
    assert collect(sweep, here) == []  # a second collect finds nothing new
    (sweep / RESULTS / "run_results/halfcheetah/kl/seed0.json").write_bytes(b'{"a": 2}')
    (sweep / RESULTS / "priors/ant.pt").write_bytes(b"new")
    with pytest.raises(ValueError, match="1 file\\(s\\) differ .*kl/seed0.json"):
        collect(sweep, here)
    assert not (here / RESULTS / "priors/ant.pt").exists()  # refused before anything was copied
