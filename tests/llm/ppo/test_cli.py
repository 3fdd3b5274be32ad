"""`rpg ppo` / the recipe: the YAML of the embedded default is the embedded default; flags override it."""

import dataclasses
from pathlib import Path

from rpg_llm.ppo.cli import TOY_DEFAULTS, _parse

CONFIG = Path(__file__).resolve().parents[3] / "recipes" / "configs" / "residual_ppo_toy.yaml"


def test_toy_yaml_matches_the_embedded_default():
    _, exp_default, ppo_default, model_default = _parse([])
    _, exp_yaml, ppo_yaml, _ = _parse(["--config", str(CONFIG)])
    assert model_default.model_name_or_path is None
    assert dataclasses.asdict(exp_default) == dataclasses.asdict(exp_yaml)
    for name in TOY_DEFAULTS:
        assert getattr(ppo_default, name) == getattr(ppo_yaml, name), name
    assert (ppo_default.omega_prime, ppo_default.alpha_hat) == (ppo_yaml.omega_prime, ppo_yaml.alpha_hat)


def test_flags_override_the_config_and_kl_coef_sets_both_coefficients():
    _, experiment, ppo, _ = _parse(
        ["--config", str(CONFIG), "--max_steps", "7", "--kl_beta", "0.2", "--kl_coef", "0.3"]
    )
    assert ppo.max_steps == 7 and experiment.kl_beta == 0.2
    assert ppo.omega_prime == ppo.alpha_hat == 0.3


def test_only_the_grpo_row_takes_grpo_scale_rewards():
    from types import SimpleNamespace

    from rpg_llm.toy.ppo_job import METHODS, _method_args

    _, experiment, ppo, _ = _parse(["--grpo_scale_rewards", "none"])
    world = SimpleNamespace(completion_length=4, special_token_ids=[0, 1])
    scaling = {name: _method_args(ppo, experiment, name, 0.5, 0.25, world).scale_rewards for name in METHODS}
    assert scaling == {
        "greedy": "group",
        "kl": "group",
        "residual": "group",
        "residual_rloo": "group",
        "residual_grpo": "none",
    }
    assert _parse([])[1].grpo_scale_rewards == "batch"  # the default row: one std for the rollout


def test_the_toy_job_names_the_flags_it_replaces_once_per_reason(capsys):
    from rpg_llm.ppo.cli import _note_flags_the_toy_job_ignores

    _note_flags_the_toy_job_ignores(
        ["--scale_rewards", "none", "--omega_prime=0.1", "--alpha_hat", "0.2", "--seed", "1"]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "note: --omega_prime, --alpha_hat ignored by the toy job; each method's (ω', α̂) comes from --greedy_alpha_hat, "
        "--kl_beta, --residual_omega_prime, --residual_alpha_hat",
        "note: --scale_rewards ignored by the toy job; the Residual GRPO row's std scaling comes from "
        "--grpo_scale_rewards",
    ]
    assert _parse(["--grpo_scale_rewards", "false"])[1].grpo_scale_rewards == "none"  # TRL's booleans work too
