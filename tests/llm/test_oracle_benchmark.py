"""The exact-oracle benchmark (rpg_llm.toy.oracle_benchmark): probe, one support, report, cache, CLI.

Fast tests use fakes (a fake clock and world for the probe, a synthetic results dict for the report, an
in-process executor and a fake contender for the cache); the slow test runs two rpg contenders end to end.
"""

from __future__ import annotations

import dataclasses
import json
import math
from concurrent.futures import Future

import pytest
import torch
from transformers import LlamaForCausalLM

from rpg_llm.ppo import cli as ppo_cli
from rpg_llm.ppo.sampling import suppress_tokens
from rpg_llm.toy.oracle_benchmark import __main__ as cli
from rpg_llm.toy.oracle_benchmark import (
    contract,
    harness,
    preference_contenders,
    registry,
    report,
)
from rpg_llm.toy.oracle_benchmark.contract import BenchmarkSettings, Contender, OracleProbe, restrict_to_content
from rpg_llm.toy.tiny_llama import tiny_llama_config, word_tokenizer
from rpg_llm.toy.world import ToyWorldArguments


# ---------------------------------------------------------------- OracleProbe: evaluation points and clock
class FakeClock:
    """``time.perf_counter`` replaced: training and evaluation advance it by chosen amounts, exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeWorld:
    """Evaluation costs 100 fake seconds (which the probe must not count); KL = 1 / (1 + evaluations so far)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.calls = clock, 0

    def evaluate(self, model, omega_prime, alpha_hat, num_samples, seed):
        self.clock.now += 100.0
        self.calls += 1
        return {"kl_to_target": 1.0 / self.calls, "kl_stderr": 0.0, "basic": float(model), "addon": 0.5}


def _probe(monkeypatch, completions=1024, evaluations=4):
    clock = FakeClock()
    monkeypatch.setattr(contract.time, "perf_counter", clock)
    world = FakeWorld(clock)
    settings = BenchmarkSettings(completions=completions, evaluations=evaluations)
    return clock, world, OracleProbe(world, settings, 0.5, 0.25, seed=0)


def test_probe_evaluates_at_the_evaluation_points_and_its_clock_excludes_evaluation(monkeypatch):
    clock, world, probe = _probe(monkeypatch)  # points 0, 256, 512, 768, 1024
    probe.start(0)
    for iteration in range(1, 9):  # 128 completions and 3 fake training seconds per iteration
        clock.now += 3.0
        probe.observe(iteration, iteration * 128)
    curve = probe.finish(8, 1024)
    assert [p.completions for p in curve] == [0, 256, 512, 768, 1024]
    assert [p.seconds for p in curve] == [0.0, 6.0, 12.0, 18.0, 24.0]  # 5 × 100 s of evaluation left out
    assert [p.basic for p in curve] == [0.0, 2.0, 4.0, 6.0, 8.0]  # the model at that moment
    assert world.calls == 5 and probe.seconds == 24.0  # finish() did not evaluate the last point twice


def test_probe_evaluates_once_when_an_iteration_passes_several_points(monkeypatch):
    clock, world, probe = _probe(monkeypatch, completions=1000, evaluations=10)  # points every 100
    probe.start(0)
    clock.now += 1.0
    probe.observe(1, 384)  # passes 100, 200, 300: one evaluation, at 384
    clock.now += 1.0
    probe.observe(2, 768)
    curve = probe.finish(3, 1000)
    assert [p.completions for p in curve] == [0, 384, 768, 1000]
    assert [p.seconds for p in curve] == [0.0, 1.0, 2.0, 2.0]


def test_probe_observe_before_start_is_refused(monkeypatch):
    _, _, probe = _probe(monkeypatch)
    with pytest.raises(RuntimeError, match="before start"):
        probe.observe(0, 128)


# ---------------------------------------------------------------- one support
def test_restrict_to_content_gives_the_log_probs_of_suppress_tokens():
    tokenizer = word_tokenizer(["a", "b", "c", "d"], {"pad_token": "<pad>", "eos_token": "<eos>"})
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        tiny_llama_config(tokenizer, hidden_size=16, num_layers=1, num_heads=2, max_positions=16)
    ).eval()
    special = [tokenizer.pad_token_id, tokenizer.eos_token_id]
    ids = torch.tensor([[2, 3, 4, 5, 2], [5, 4, 3, 2, 3]])
    with torch.no_grad():
        raw = model(ids).logits
        handle = restrict_to_content(model, special)
        hooked = model(ids).logits
        handle.remove()
        after = model(ids).logits
    expected = torch.log_softmax(suppress_tokens(raw, special), dim=-1)
    assert torch.equal(torch.log_softmax(hooked, dim=-1), expected)
    assert torch.log_softmax(hooked, -1)[..., special].exp().max() == 0  # no mass on <pad> / <eos>
    assert torch.equal(after, raw)  # remove() restores the raw model


# ---------------------------------------------------------------- rpg's contenders
def test_rpg_contenders_are_residual_and_kl_with_ppo_rloo_grpo():
    from rpg_llm.toy.oracle_benchmark.rpg_contenders import CONTENDERS

    families = {c.key: c.family for c in CONTENDERS}
    assert families == {
        f"rpg_{kind}_{family}": family for kind in ("ppo", "rloo", "grpo") for family in ("residual", "kl")
    }
    settings = BenchmarkSettings()
    assert {c.target(settings) for c in CONTENDERS} == {(0.5, 0.5), (0.5, 0.25)}


def test_default_ppo_config_is_what_the_toy_job_trains_with():
    # The contenders start from it and pin the benchmark's schedule on top (test_oracle_contenders.py).
    from rpg_llm.ppo.cli import _parse
    from rpg_llm.toy.ppo_job import default_ppo_config

    parsed, shared = _parse([])[2], default_ppo_config()  # what `rpg ppo` with no model trains with
    assert dataclasses.asdict(shared) == dataclasses.asdict(parsed) and shared.local_batch_size == 256


# ---------------------------------------------------------------- report from a synthetic results dict
def _run(key, seed, family, kls, seconds_per_point=10.0, basic=1.0, addon=0.5):
    curve = [
        {"completions": 512 * i, "seconds": seconds_per_point * i, "kl_to_target": kl, "kl_stderr": 0.0}
        | {"basic": basic, "addon": addon}
        for i, kl in enumerate(kls)
    ]
    target = (0.5, 0.5) if family == "kl" else (0.5, 0.25)
    return {
        "key": key,
        "seed": seed,
        "label": key.upper(),
        "family": family,
        "trainer": "fake",
        "notes": "synthetic",
        "omega_prime": target[0],
        "alpha_hat": target[1],
        "curve": curve,
        "facts": {},
    }


def _synthetic_results():
    runs = [
        _run("good", 0, "residual", [1.0, 0.2, 0.04, 0.02], basic=3.0, addon=1.5),
        _run("good", 1, "residual", [1.0, 0.2, 0.07, 0.04], basic=3.0, addon=1.5),
        _run("slow", 0, "kl", [0.8, 0.5, 0.3, 0.35], basic=2.0, addon=1.0),
    ]
    targets = {
        "kl": {"omega_prime": 0.5, "alpha_hat": 0.5, "basic": 2.0, "addon": 1.25, "total": 3.25, "kl_to_prior": 0.1},
        "residual": {
            "omega_prime": 0.5,
            "alpha_hat": 0.25,
            "basic": 3.5,
            "addon": 1.5,
            "total": 5.0,
            "kl_to_prior": 0.2,
        },
    }
    contenders = {}
    for run in runs:
        entry = contenders.setdefault(run["key"], {})
        entry.update({k: run[k] for k in ("label", "family", "trainer", "notes", "omega_prime", "alpha_hat")})
        entry.setdefault("runs", []).append(run)
    settings = {"completions": 1536, "evaluations": 3}
    world = {"vocab_size": 8, "completion_length": 4, "num_prompts": 4}
    return {"settings": settings, "world": world, "targets": targets, "contenders": contenders, "missing": []}


def test_report_table_numbers_from_synthetic_runs():
    rows = {row["key"]: row for row in report.table_rows(_synthetic_results())}
    good, slow = rows["good"]["summary"], rows["slow"]["summary"]
    assert good["final_kl_mean"] == pytest.approx(0.03)
    assert good["final_kl_std"] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of 0.02, 0.04
    assert good["completions_to_reach"] == 1536  # the mean is 0.055 at 1024, 0.03 at 1536
    assert good["kl_at_half_budget"] == pytest.approx(0.1275)  # 768: halfway between 0.2 (512) and 0.055 (1024)
    assert good["train_seconds"] == 30.0 and good["total"] == 4.5
    assert rows["good"]["final_kl"] == "0.030 ± 0.014 (n=2)"
    assert rows["slow"]["reach"] == "not reached" and slow["final_kl_std"] == 0.0
    table = report.markdown(_synthetic_results(), {"commit": "abc"})
    assert "| GOOD | fake | Residual (ω' = 0.5, α̂ = 0.25) | synthetic | 0.030 ± 0.014 (n=2) |" in table
    assert "| exact target: KL | — | KL (ω' = 0.5, α̂ = 0.5) |" in table
    # the summary table (quoted in README) repeats the same numbers in fewer columns
    assert "| GOOD | Residual (ω' = 0.5, α̂ = 0.25) | 0.030 ± 0.014 (n=2) | 1,536 | 30.000 | 4.500 |" in table


def test_report_findings_from_synthetic_runs():
    lines = report.findings(_synthetic_results())
    assert lines[0].startswith("**GOOD** reaches its target (final KL 0.030 ± 0.014 nats ≤ 0.05")
    # per-seed drops 0.02 and 0.03: mean 0.025, s.e. 0.005, clearly positive
    assert "still falling over the last two points (0.055 → 0.030; drop 0.025 ± 0.005 s.e. over seeds)" in lines[0]
    # one seed, evaluated exactly: no spread and no noise estimate, so no claim about the trend
    assert lines[1].startswith(
        "**SLOW** does not reach its target in this budget (final KL 0.350 nats (one seed) > 0.05"
    )
    assert "over the last two points 0.300 → 0.350 (one seed, evaluated exactly: no noise estimate" in lines[1]
    assert "Residual − KL: basic +1.500, add-on +0.250, total +1.750." in lines[2]  # exact targets
    assert (
        "GOOD (final KL 0.030)" in lines[3] and "Residual − KL: basic +1.000, add-on +0.500, total +1.500." in lines[3]
    )


def test_a_drop_within_seed_noise_is_not_called_falling():
    results = _synthetic_results()
    # seed 0 falls 0.04 -> 0.02, seed 1 rises 0.07 -> 0.075: a positive mean drop, but within 2 s.e.
    results["contenders"]["good"]["runs"][1]["curve"][-1]["kl_to_target"] = 0.075
    drop = report.table_rows(results)[0]["summary"]["last_drop"]
    assert drop["mean"] == pytest.approx(0.0075) and drop["stderr"] == pytest.approx(0.0125)
    assert not drop["falling"]
    assert "flat within noise" in report.findings(results)[0] and "s.e. over seeds" in report.findings(results)[0]


@pytest.mark.parametrize("last_kl, verdict", [(0.25, "still falling"), (0.28, "flat within noise")])
def test_one_seed_scored_by_monte_carlo_tests_its_drop_against_the_monte_carlo_error(last_kl, verdict):
    # A world too large to enumerate: each point has a Monte Carlo s.e. (0.01 here), so one seed's drop has one
    # too, √2·0.01 = 0.0141: a drop of 0.05 is > 2 s.e., a drop of 0.02 is not.
    results = _synthetic_results()
    for point, kl in zip(results["contenders"]["slow"]["runs"][0]["curve"], [0.8, 0.5, 0.3, last_kl]):
        point.update(kl_to_target=kl, kl_stderr=0.01)
    row = report.table_rows(results)[1]
    drop = row["summary"]["last_drop"]
    assert drop["stderr"] == pytest.approx(math.sqrt(2) * 0.01) and drop["source"] == "Monte Carlo s.e., one seed"
    assert row["final_kl"] == f"{last_kl:.3f} (n=1), MC s.e. ≤ 0.010"
    assert f"{verdict} over the last two points" in report.findings(results)[1]


def test_report_writes_md_json_png(tmp_path):
    md, js, png = report.write_report(_synthetic_results(), tmp_path, {"commit": "abc"})
    payload = json.loads(js.read_text())
    assert payload["provenance"] == {"commit": "abc"} and len(payload["table"]) == 4
    assert payload["contenders"]["good"]["runs"][1]["curve"][-1]["kl_to_target"] == 0.04
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "## Findings" in md.read_text()


# ---------------------------------------------------------------- harness: cached runs are skipped
class InlineExecutor:
    """ProcessPoolExecutor stand-in: runs each task at once in this process (so fakes are visible)."""

    submitted: list = []

    def __init__(self, **kwargs) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, function, spec):
        InlineExecutor.submitted.append((spec.key, spec.seed))
        future = Future()
        future.set_result(function(spec))
        return future


def _fake_run(world, settings, seed, probe, output_dir):
    model = world.load_prior_model()
    probe.start(model)
    probe.observe(model, settings.completions)
    probe.finish(model, settings.completions)
    return {"seed_seen": seed}


def test_harness_caches_each_run_and_skips_it_on_rerun(monkeypatch, tmp_path, toy_world):
    world = toy_world(vocab_size=3, completion_length=2, num_prompts=2, distill_steps=0, hidden_size=16, num_heads=2)
    fake = Contender(key="fake", label="Fake", family="residual", trainer="test", run=_fake_run)
    monkeypatch.setattr(registry, "all_contenders", lambda: {"fake": fake})
    monkeypatch.setattr(harness, "ProcessPoolExecutor", InlineExecutor)
    monkeypatch.setattr(InlineExecutor, "submitted", [])
    settings = BenchmarkSettings(completions=64, evaluations=1)
    folder = harness.run_benchmark(["fake"], [0, 1], settings, world, tmp_path, progress=False)
    assert InlineExecutor.submitted == [("fake", 0), ("fake", 1)]
    first = harness.result_path(folder, "fake", 1).read_text()
    assert json.loads(first)["facts"] == {"seed_seen": 1} and len(json.loads(first)["curve"]) == 2
    harness.run_benchmark(["fake"], [0, 1], settings, world, tmp_path, progress=False)
    assert len(InlineExecutor.submitted) == 2  # nothing rerun
    harness.result_path(folder, "fake", 0).unlink()
    harness.run_benchmark(["fake"], [0, 1], settings, world, tmp_path, progress=False)
    assert InlineExecutor.submitted[2:] == [("fake", 0)]  # only the missing run
    assert harness.result_path(folder, "fake", 1).read_text() == first
    other = harness.run_folder(tmp_path, BenchmarkSettings(completions=128, evaluations=1), world)
    assert other != folder  # another budget is another cache folder


TRAINER_SETTING_CHANGES = {
    "rpg's PPO defaults": lambda mp: mp.setattr(ppo_cli, "TOY_DEFAULTS", {**ppo_cli.TOY_DEFAULTS, "vf_coef": 0.25}),
    "the on-policy contenders' schedule": lambda mp: mp.setattr(
        contract, "ON_POLICY_SCHEDULE", dataclasses.replace(contract.ON_POLICY_SCHEDULE, passes=2)
    ),
    "the preference learning rate": lambda mp: mp.setattr(preference_contenders, "LEARNING_RATE", 1e-4),
    "the shared Trainer arguments": lambda mp: mp.setitem(contract.TRAINER_ARGS, "optim", "sgd"),
}


@pytest.mark.parametrize("change", TRAINER_SETTING_CHANGES)
def test_changing_a_trainer_setting_moves_the_run_cache(change, monkeypatch, toy_world):
    # Runs made with the old setting must not be served after it changes: the folder's key covers it.
    world = toy_world(vocab_size=3, completion_length=2, num_prompts=2, distill_steps=0, hidden_size=16, num_heads=2)
    settings = BenchmarkSettings(completions=256, evaluations=2)
    before = harness.run_folder("runs", settings, world)
    assert harness.run_folder("runs", settings, world) == before  # deterministic
    TRAINER_SETTING_CHANGES[change](monkeypatch)
    assert harness.run_folder("runs", settings, world) != before


# ---------------------------------------------------------------- CLI: bad input, one line, before any work
BAD_INPUTS = [
    (["--contenders", "nope"], "unknown contender nope"),
    (["--contenders", "rpg_ppo_kl", "rpg_ppo_kl"], "contender listed twice: rpg_ppo_kl"),
    (["--seeds", "0", "0"], "seed listed twice: 0"),
    (["--seeds", "-1"], "seeds must be >= 0, got -1"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--completions", "0"], "completions must be >= 1, got 0"),
    (["--evaluations", "0"], "evaluations must be >= 1, got 0"),
    (["--completions", "4", "--evaluations", "8"], "--evaluations (8) must be <= --completions (4)"),
    (["--seeds", "x"], "invalid int value: 'x'"),
    (["--world-vocab-size", "1"], "vocab_size must be in [2, 256], got 1"),
    (["--world-completion-length", "0"], "completion_length must be >= 1, got 0"),
    (["--world-distill-steps", "-5"], "distill_steps must be >= 0, got -5"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_cli_bad_input_is_one_line_naming_the_value(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(harness, "run_benchmark", lambda *a, **k: pytest.fail("ran before rejecting the input"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_cli_defaults_are_every_contender_and_seeds_0_1_2():
    args, settings, keys = cli.parse_args([])
    assert keys == list(registry.all_contenders()) and args.seeds == [0, 1, 2] and args.jobs == 1
    assert settings == BenchmarkSettings() and not args.report_only
    assert args.world.world_config() == ToyWorldArguments().world_config()  # the embedded job's world


def test_cli_world_flags_name_a_larger_world():
    args, _, _ = cli.parse_args(["--world-vocab-size", "64", "--world-completion-length", "16"])
    config = args.world.world_config()
    assert (config.vocab_size, config.completion_length) == (64, 16) and config.num_prompts == 4


# ---------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
def test_two_rpg_contenders_end_to_end(tmp_path):
    argv = ["--contenders", "rpg_ppo_residual", "rpg_ppo_kl", "--seeds", "0", "--completions", "256"]
    argv += ["--evaluations", "2", "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs")]
    assert cli.main(argv) == 0
    payload = json.loads((tmp_path / "results" / "oracle_benchmark.json").read_text())
    for key in ("rpg_ppo_residual", "rpg_ppo_kl"):
        (run,) = payload["contenders"][key]["runs"]
        assert [p["completions"] for p in run["curve"]] == [0, 128, 256]
        assert run["facts"]["iterations"] == 2 and run["facts"]["completions_per_iteration"] == 128
        assert run["curve"][-1]["kl_to_target"] < run["curve"][0]["kl_to_target"]  # it learns
    assert payload["contenders"]["rpg_ppo_kl"]["alpha_hat"] == 0.5
    assert "rpg Residual PPO" in (tmp_path / "results" / "oracle_benchmark.md").read_text()
    assert (tmp_path / "results" / "oracle_benchmark.png").stat().st_size > 0
    assert cli.main([*argv, "--report-only"]) == 0  # from the cache alone
