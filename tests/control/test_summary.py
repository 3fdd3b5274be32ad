"""results/mujoco/paper/summary.md: Table I's Soft PPO column and Table II's claims, from result JSONs only."""

from __future__ import annotations

import pytest

from rpg_control.reproduce import summary


def _figure(mean: float, std: float = 0.0) -> dict:
    return {"mean": mean, "std": std}


def _run(
    env: str, variant: str, seed: int, best: float, last: float, best_step: int | None = None, sampled: float = 0.0
) -> dict:
    """A finished result whose every quantity is ``best`` / ``last`` (std 0) with the mean action, and that plus
    ``sampled`` with sampled actions."""
    evaluation = {}
    for checkpoint, value in (("best", best), ("last", last)):
        for key, shift in ((checkpoint, 0.0), (f"{checkpoint}_stochastic", sampled)):
            evaluation[key] = {q: _figure(value + shift) for q in ("total", "basic", "addon", "addon_metric")}
    return {
        "spec": {"env": env, "variant": variant, "seed": seed, "episodes": 100, "steps": 5_000_000},
        "seed": seed,
        "eval": evaluation,
        "evaluated_checkpoints": {"best": {"checkpoint_step": best_step}},
    }


def test_soft_row_pools_the_last_checkpoints_and_names_the_best_seeds_best_checkpoint():
    runs = [
        _run("hopper", "soft", 0, best=500.0, last=100.0, best_step=40_960),
        _run("hopper", "soft", 1, best=900.0, last=200.0, best_step=81_920),  # the best seed, on best basic
    ]
    page = summary.summary_markdown(runs)
    # Pooled over 2 x 100 episodes of std 0: mean 150, std 50 (the union of the episodes).
    assert (
        "| Hopper | 2/5 | 150.0 ± 50.0 | 100.0 – 200.0 | 900.0 ± 0.0 (seed 1, step 81,920) | 3105.3 ± 829.5 |" in page
    )
    assert "| Ant | 0/5 | — | — | — | 3845.6 ± 911.7 | 4581.1 ± 540.3 |" in page


def test_claims_rows_give_d_against_welchs_threshold_per_mode_and_name_missing_cells():
    runs = [_run("halfcheetah", "residual", s, best=v, last=v, sampled=-5.0) for s, v in enumerate((10.0, 12.0, 14.0))]
    runs += [_run("halfcheetah", "kl", s, best=v, last=v) for s, v in enumerate((0.0, 2.0, 4.0))]
    page = summary.summary_markdown(runs)
    # d = 10 (sampled: 5); se = sqrt(4/3 + 4/3) = 1.633; Welch's dof = 4, t = 2.776: needs 4.53.
    kl_best = (
        "| HalfCheetah | Residual PPO's total reward above KL PPO's | best | 3 vs 3 | +10.0 (4.5) | **reproduced** | "
    )
    assert kl_best + "+5.0 (4.5) | **reproduced** | 5488.3 vs 5418.7 |" in page
    greedy_last = (
        "| HalfCheetah | Residual PPO's total reward above Greedy PPO's | last | 3 vs 0 | — | n/a (runs missing) |"
    )
    assert greedy_last in page
    assert "| Hopper |" not in page.split("## Table II")[1]  # no customization run there: no claim rows


def test_the_prior_is_one_checkpoint_and_one_seed_has_no_spread_to_test():
    runs = [_run("hopper", "residual", 0, best=110.0, last=110.0), _run("hopper", "kl", 0, best=100.0, last=100.0)]
    prior = _run("hopper", "prior", 0, best=100.0, last=100.0)
    prior["spec"]["episodes"] = 500
    for checkpoint in ("best", "last", "best_stochastic", "last_stochastic"):
        prior["eval"][checkpoint]["addon"] = _figure(100.0, std=50.0)  # se = 50 / sqrt(500) = 2.236
    page = summary.summary_markdown([*runs, prior])
    assert (
        "| Hopper | Residual PPO's total reward above KL PPO's | best | 1 vs 1 | +10.0 (one seed) | **inconclusive** |"
        in page
    )
    # One Residual seed has no spread either: the prior's standard error alone makes no test (no dof).
    assert "| Hopper | Residual PPO's add-on reward above the prior's | last | 1 vs prior | +10.0 (one seed) |" in page
    runs.append(_run("hopper", "residual", 1, best=110.0, last=110.0))
    page = summary.summary_markdown([*runs, prior])
    # Two equal seeds: se = the prior's 2.236 only, with no seed dof: t is infinite, never reproduced.
    assert "| Hopper | Residual PPO's add-on reward above the prior's | last | 2 vs prior |" in page


def test_state_std_runs_are_a_cell_of_their_own():
    runs = [_run("ant", "soft", 0, best=10.0, last=10.0), _run("ant", "soft", 1, best=30.0, last=30.0)]
    state = _run("ant", "soft", 0, best=-1000.0, last=-1000.0)
    state["spec"]["state_std"] = True
    state["spec"]["config_sha"] = "state"
    page = summary.summary_markdown([*runs, state])
    assert "| Ant | 2/5 | 20.0 ± 10.0 | 10.0 – 30.0 |" in page  # Table III's state-std run is not pooled in


@pytest.mark.parametrize("key, value", [("config_sha", "another"), ("episodes", 500), ("prior_sha", "other")])
def test_a_cell_of_two_configurations_is_refused(key, value):
    runs = [_run("ant", "soft", 0, 1.0, 1.0), _run("ant", "soft", 1, 1.0, 1.0)]
    runs[1]["spec"][key] = value
    with pytest.raises(ValueError, match="ant/soft: runs of 2 configurations"):
        summary.summary_markdown(runs)


def test_the_committed_summary_page_is_current():
    """results/mujoco/paper/summary.md is its result JSONs' (collect re-renders it with each finished run)."""
    assert summary.main(["--check"]) == 0
