"""Every variant's per-step reward is its formula (docs/theory.md), computed through rpg/; configs hold the "
"paper's tables."""

import pytest
import torch

pytest.importorskip("mujoco")

from rpg.reward import RewardCoefficients  # noqa: E402
from rpg_control.algorithm import rpg_step_reward  # noqa: E402
from rpg_control.config import ConfigError, load_config  # noqa: E402


@pytest.fixture(scope="module")
def fake_prior(tmp_path_factory):
    """A file path that exists: load_config only checks existence; content checks live in load_prior."""
    path = tmp_path_factory.mktemp("prior") / "prior.pt"
    path.write_bytes(b"not read here")
    return str(path)


@pytest.fixture
def step_batch():
    g = torch.Generator().manual_seed(0)
    shape = (7, 5)  # [T, num_envs]
    return {
        "basic": torch.randn(shape, generator=g),
        "addon": torch.randn(shape, generator=g),
        "logp": torch.randn(shape, generator=g) - 3.0,
        "prior_logp": torch.randn(shape, generator=g) - 3.0,
    }


def _reward(config, batch):
    coefficients, entropy_coef, kind = config.reward_setup()
    prior = batch["prior_logp"] if coefficients.needs_prior else None
    reward = rpg_step_reward(
        kind, batch["basic"], batch["addon"], batch["logp"], prior, coefficients, config.reward_scale
    )
    return reward, entropy_coef


@pytest.mark.parametrize("env", ["halfcheetah", "hopper", "ant"])
def test_entropy_variants_rewards_and_loss_terms(env, step_batch):
    r, logp = step_batch["basic"], step_batch["logp"]
    expected = {  # (per-step reward, coefficient of −H in the loss), docs/theory.md §3
        "none": lambda a: (r, 0.0),
        "end": lambda a: (r, a),
        "repeat": lambda a: (r - a * logp, a),
        "soft": lambda a: (r - a * logp, 0.0),
        "full": lambda a: (r + step_batch["addon"] - a * logp, 0.0),
    }
    for variant, formula in expected.items():
        config = load_config(env, variant)
        reward, entropy_coef = _reward(config, step_batch)
        want_reward, want_coef = formula(config.alpha)
        torch.testing.assert_close(reward, want_reward, rtol=0, atol=1e-6)
        assert entropy_coef == want_coef, variant


@pytest.mark.parametrize("env", ["halfcheetah", "hopper", "ant"])
def test_customization_rewards(env, step_batch, fake_prior):
    rr, logp, prior = step_batch["addon"], step_batch["logp"], step_batch["prior_logp"]
    for variant in ("greedy", "kl", "residual"):
        config = load_config(env, variant, {"prior": fake_prior})
        reward, entropy_coef = _reward(config, step_batch)
        want = rr + config.omega_prime * prior - config.alpha_hat * logp  # eq. 8
        torch.testing.assert_close(reward, want, rtol=0, atol=1e-6)
        assert entropy_coef == 0.0
    assert load_config(env, "greedy", {"prior": fake_prior}).omega_prime == 0.0
    kl = load_config(env, "kl", {"prior": fake_prior})
    assert kl.omega_prime == kl.alpha_hat == load_config(env, "soft").alpha  # KL PPO: ω' = α̂ = Soft PPO's α


def test_residual_with_omega_equal_alpha_hat_is_exactly_the_kl_form(step_batch, fake_prior):
    alpha = 0.13472
    residual = load_config("halfcheetah", "residual", {"prior": fake_prior, "omega_prime": alpha, "alpha_hat": alpha})
    kl = load_config("halfcheetah", "kl", {"prior": fake_prior})
    assert residual.reward_setup()[0] == RewardCoefficients.kl(alpha) == kl.reward_setup()[0]
    residual_reward, _ = _reward(residual, step_batch)
    kl_reward, _ = _reward(kl, step_batch)
    assert torch.equal(residual_reward, kl_reward)
    # The classic RLHF form r_R − β·(log πθ − log π_prior) (eq. 10)
    classic = step_batch["addon"] - alpha * (step_batch["logp"] - step_batch["prior_logp"])
    torch.testing.assert_close(residual_reward, classic, rtol=0, atol=1e-6)


def test_reward_scale_multiplies_the_whole_rpg_reward(step_batch):
    config = load_config("hopper", "soft", {"reward_scale": 0.25})
    scaled, _ = _reward(config, step_batch)
    unscaled, _ = _reward(load_config("hopper", "soft"), step_batch)
    torch.testing.assert_close(scaled, 0.25 * unscaled)


def test_configs_hold_tables_iv_and_v():
    table_iv = {  # α: End-Entropy, Repeat-Entropy, Soft
        "halfcheetah": (0.01, 0.13472, 0.13472),
        "ant": (0.001, 0.0001, 0.0001),
        "hopper": (0.0005, 0.001, 0.001),
    }
    table_v = {"halfcheetah": (0.0, 0.13472, 0.17), "ant": (0.0, 0.0001, 0.01), "hopper": (0.0, 0.001, 0.01)}
    for env, alphas in table_iv.items():
        assert tuple(load_config(env, v).alpha for v in ("end", "repeat", "soft")) == alphas
        assert load_config(env, "full").alpha == alphas[2]
    for env, omegas in table_v.items():
        got = tuple(load_config(env, v, {"prior": __file__}).omega_prime for v in ("greedy", "kl", "residual"))
        assert got == omegas
        assert all(
            load_config(env, v, {"prior": __file__}).alpha_hat == table_iv[env][2] for v in ("greedy", "kl", "residual")
        )


@pytest.mark.parametrize(
    "env, variant, overrides, message",
    [
        ("walker", "soft", {}, "unknown env 'walker'"),
        ("hopper", "sac", {}, "unknown variant 'sac'"),
        ("hopper", "soft", {"alpha": -0.1}, "alpha must be a finite number >= 0"),
        ("hopper", "residual", {"prior": __file__, "omega_prime": -1.0}, "omega_prime must be"),
        ("hopper", "kl", {"prior": __file__, "alpha_hat": float("nan")}, "alpha_hat must be"),
        ("hopper", "residual", {}, "customizes a prior"),
        ("hopper", "residual", {"prior": "/no/such/prior.pt"}, "prior checkpoint not found"),
        ("hopper", "soft", {"prior": __file__}, "trains from scratch"),
        ("hopper", "soft", {"learning_rate": 0.0}, "learning_rate must be"),
        ("hopper", "soft", {"num_envs": 0}, "num_envs must be a positive integer"),
        ("hopper", "soft", {"lr": 0.1}, "unknown config key"),
        ("hopper", "soft", {"std_type": "tanh"}, "unknown std_type"),
    ],
)
def test_bad_config_is_one_clear_error(env, variant, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env, variant, overrides)
    assert "\n" not in str(info.value)
