"""The fast PPO update (fused MLP forward/backward, one gather per epoch, fused Adam) against a
frozen copy of the update it replaced (``tests/control/legacy_ppo_update.py``, commit 864929d): same parameters
after an update to float tolerance, same statistics, and committed checkpoints act as before."""

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

from rpg_control.actor_critic import ActorCritic, GaussianActor, _MLPFunction, mlp, mlp_forward  # noqa: E402
from rpg_control.algorithm import (  # noqa: E402
    FusedAdam,
    Rollout,
    _minibatch_gradient,
    _minibatch_loss,
    _mlp_stacks,
    _sample_table,
    make_optimizer,
    ppo_update,
    rpg_step_reward,
)
from rpg_control.config import load_config  # noqa: E402

from .legacy_ppo_update import (  # noqa: E402
    legacy_critic,
    legacy_distribution_params,
    legacy_make_optimizer,
    legacy_ppo_update,
    legacy_sample,
)

ROOT = Path(__file__).resolve().parents[2]
# Parameters after one update differ from the legacy update's by float rounding only (tanh as
# 2σ(2z) − 1, another summation order in the gradient norm and Adam's fused kernel).
ATOL, RTOL = 2e-6, 1e-5


def _rollout(model, config, obs_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    T, N = config.steps_per_env, config.num_envs
    obs = torch.randn(T, N, obs_dim, generator=g)
    with torch.no_grad():
        actions, logprobs = legacy_sample(model.actor, obs, generator=g)
        values = legacy_critic(model, obs)
        last_values = legacy_critic(model, torch.randn(N, obs_dim, generator=g))
    terminated = torch.rand(T, N, generator=g) < 0.02
    truncated = torch.rand(T, N, generator=g) < 0.01
    coefficients, entropy_coef, kind = config.reward_setup()
    basic, addon = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    rewards = rpg_step_reward(kind, basic, addon, logprobs, None, coefficients)
    final_values = torch.randn(T, N, generator=g)
    rollout = Rollout(obs, actions, logprobs, values, rewards, terminated, truncated, final_values, last_values)
    return rollout, entropy_coef


CASES = [
    ("halfcheetah", {}),  # [256, 256] tanh, both nets, global std (32-row minibatches: torch's tanh)
    # 512-row minibatches: the hand-written MLP node with tanh as 2σ(2z) − 1, as in training
    ("halfcheetah", {"num_envs": 16, "steps_per_env": 64, "num_minibatches": 2}),
    ("hopper", {}),  # actor [256, 256] relu, critic [32, 32]
    ("hopper", {"std_type": "state", "activation": "elu", "value_clip_range": 0.2, "max_grad_norm": 0.05}),
    ("ant", {"lr_schedule": "fixed", "normalize_advantage": False, "num_minibatches": 5}),  # uneven minibatches
]


@pytest.mark.parametrize("env,overrides", CASES)
@pytest.mark.parametrize("update_actor", [True, False])
def test_fast_update_equals_legacy(env, overrides, update_actor):
    small = {"num_envs": 8, "steps_per_env": 32, "num_epochs": 2}
    config = load_config(env, "soft", {**small, **overrides})
    obs_dim, act_dim = {"halfcheetah": (17, 6), "hopper": (11, 3), "ant": (27, 8)}[env]
    torch.manual_seed(1)
    legacy_model = ActorCritic.from_config(config, obs_dim, act_dim)
    fast_model = copy.deepcopy(legacy_model)
    legacy_opt, fast_opt = legacy_make_optimizer(legacy_model, config), make_optimizer(fast_model, config)
    for updates in range(2):  # the second update starts from Adam state and an adapted lr
        rollout, entropy_coef = _rollout(legacy_model, config, obs_dim, seed=updates)
        old = legacy_ppo_update(
            legacy_model,
            legacy_opt,
            rollout,
            config,
            entropy_coef,
            update_actor,
            torch.Generator().manual_seed(updates),
        )
        new = ppo_update(
            fast_model, fast_opt, rollout, config, entropy_coef, update_actor, torch.Generator().manual_seed(updates)
        )
        for key, value in old.items():
            assert new[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        for (name, a), b in zip(legacy_model.state_dict().items(), fast_model.state_dict().values()):
            torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL, msg=lambda m, n=name: f"{n}: {m}")
        assert [g["lr"] for g in fast_opt.param_groups] == pytest.approx([g["lr"] for g in legacy_opt.param_groups])
    if not update_actor:  # the actor got no gradient: bit-equal to where it started
        torch.manual_seed(1)
        start = ActorCritic.from_config(config, obs_dim, act_dim)
        for a, b in zip(start.actor.parameters(), fast_model.actor.parameters()):
            assert torch.equal(a, b)


GRADIENT_CASES = [
    ("halfcheetah", {}),  # tanh, global std, entropy bonus
    ("hopper", {"value_clip_range": 0.05}),  # relu, both branches of the value clip
    ("hopper", {"std_type": "state", "activation": "elu", "normalize_advantage": False}),
    ("ant", {"std_type": "state", "clip_range": 0.02}),  # a state std that leaves the clamp's range
]


@pytest.mark.parametrize("env,overrides", GRADIENT_CASES)
@pytest.mark.parametrize("update_actor", [True, False])
def test_written_out_gradient_equals_autograd(env, overrides, update_actor):
    """The minibatch gradient written out (``_minibatch_gradient``) against autograd through the
    loss it differentiates (``_minibatch_loss``), in float64: every parameter's gradient, the KL and
    the statistics; parameters the loss does not reach get no gradient."""
    config = load_config(env, "soft", {"num_envs": 4, "steps_per_env": 16, **overrides})
    obs_dim, act_dim = {"halfcheetah": (17, 6), "hopper": (11, 3), "ant": (27, 8)}[env]
    torch.manual_seed(2)
    model = ActorCritic.from_config(config, obs_dim, act_dim)
    if config.std_type == "state":  # some log σ beyond the clamp's upper bound 2
        with torch.no_grad():
            model.actor.mean_net[-1].bias[act_dim:] = 1.99
            model.actor.mean_net[-1].weight[act_dim:] *= 10.0
    rollout, entropy_coef = _rollout(model, config, obs_dim)
    model.double()
    advantages, returns = rollout.advantages(config.gamma, config.gae_lambda)
    table, _ = _sample_table(rollout, advantages, returns)
    minibatch = table.double()[torch.randperm(table.shape[0], generator=torch.Generator().manual_seed(0))[:40]]
    entropy_coef = entropy_coef or 0.01
    minibatch[:7, obs_dim + act_dim] += 0.5  # old log-probs moved: ratios outside [1 − ε, 1 + ε] on both sides
    minibatch[7:14, obs_dim + act_dim] -= 0.5
    loss, kl, stat = _minibatch_loss(model, minibatch, obs_dim, config, entropy_coef, update_actor)
    names = [n for n, _ in model.named_parameters()]
    expected = dict(zip(names, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    got_kl, got_stat = _minibatch_gradient(
        model, _mlp_stacks(model), minibatch, obs_dim, config, entropy_coef, update_actor
    )
    torch.testing.assert_close(got_stat, stat.detach(), rtol=1e-12, atol=1e-14)
    assert (got_kl is None) == (kl is None) and (kl is None or torch.allclose(got_kl, kl, rtol=1e-12))
    if update_actor:
        assert 0 < stat[4] < 1  # some ratios clipped, some not
    for name, p in model.named_parameters():
        if expected[name] is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(
                p.grad, expected[name], rtol=1e-10, atol=1e-13, msg=lambda m, n=name: f"{n}: {m}"
            )
    if config.std_type == "state" and update_actor:
        raw = model.actor.mean_net(minibatch[:, :obs_dim])[:, act_dim:]
        assert (raw > 2.0).any() and (raw < 2.0).any()  # the clamp's backward is exercised


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize("direct", [False, True])
def test_mlp_forward_and_backward_equal_the_module(activation, direct):
    """Through mlp_forward (which takes the hand-written node for large tanh stacks only) and
    through that node directly, for every activation."""
    torch.manual_seed(0)
    net = mlp(17, [64, 48], 5, activation, out_gain=0.5)
    x = torch.randn(4, 80, 17, requires_grad=True)  # 320 rows × 64: the sigmoid form of tanh
    expected = net(x)
    if direct:
        params = [t for layer in net[0::2] for t in (layer.weight, layer.bias)]
        got = _MLPFunction.apply(activation, x.reshape(-1, 17), *params).reshape(4, 80, 5)
    else:
        got = mlp_forward(net, x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(expected)
    wanted = torch.autograd.grad(expected, [x, *net.parameters()], grad)
    found = torch.autograd.grad(got, [x, *net.parameters()], grad)
    for a, b in zip(wanted, found):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(mlp_forward(net, x[0, 0]), net(x[0, 0]), atol=1e-6, rtol=1e-5)


def test_fused_adam_stays_fused_after_loading_a_foreach_state():
    config = load_config("hopper", "soft")
    model = ActorCritic.from_config(config, 11, 3)
    legacy = legacy_make_optimizer(model, config)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    legacy.step()
    optimizer = make_optimizer(model, config)
    assert isinstance(optimizer, FusedAdam)
    optimizer.load_state_dict(legacy.state_dict())
    assert all(g["fused"] and not g["foreach"] for g in optimizer.param_groups)
    optimizer.step()


CHECKPOINTS = [
    ROOT / "results" / "control" / "halfcheetah_soft_1m_best.pt",  # 256-256 tanh
    ROOT / "results" / "mujoco" / "quick" / "priors" / "hopper.pt",  # 256-256 relu actor, 32-32 critic
    ROOT / "results" / "mujoco" / "quick" / "priors" / "ant.pt",  # 64-64 tanh
]


@pytest.mark.parametrize("path", [p for p in CHECKPOINTS if p.is_file()], ids=lambda p: p.name)
def test_committed_checkpoint_loads_and_acts_as_before(path):
    from rpg_control.checkpoint import load_checkpoint
    from rpg_control.config import config_from_dict
    from rpg_control.envs import get_env_spec

    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"])
    spec = get_env_spec(config.env)
    model = ActorCritic.from_config(config, spec.obs_dim, spec.act_dim)
    model.load_state_dict(payload["model"])  # the state_dict keys are unchanged
    obs = torch.randn(512, spec.obs_dim, generator=torch.Generator().manual_seed(0))  # ≥ 12,288 hidden elements
    with torch.no_grad():
        expected = legacy_distribution_params(model.actor, obs)
        got = model.actor.distribution_params(obs)
        torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got[1], expected[1])
        torch.testing.assert_close(model.critic(obs), legacy_critic(model, obs), atol=1e-5, rtol=1e-5)
        a, logp = model.actor.sample(obs, generator=torch.Generator().manual_seed(1))
        b, logq = legacy_sample(model.actor, obs, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp, logq, atol=1e-5, rtol=1e-5)
    assert isinstance(model.actor, GaussianActor)


def test_fused_adam_step_is_torchs_fused_adam_bit_for_bit():
    torch.manual_seed(0)
    model = ActorCritic(11, 3, [32, 32], [16, 16], "tanh", 0.5, "global")
    twin = copy.deepcopy(model)
    groups = [{"params": list(model.actor.parameters())}, {"params": list(model.critic.parameters())}]
    ours = FusedAdam(groups, lr=1e-3, eps=1e-5)
    torchs = torch.optim.Adam(
        [{"params": list(twin.actor.parameters())}, {"params": list(twin.critic.parameters())}],
        lr=1e-3,
        eps=1e-5,
        fused=True,
    )
    for i in range(3):
        for net, optimizer in ((model, ours), (twin, torchs)):
            g = torch.Generator().manual_seed(i)
            for name, p in net.named_parameters():
                p.grad = None if (i == 1 and name.startswith("actor")) else torch.randn(p.shape, generator=g)
            optimizer.param_groups[0]["lr"] = 1e-3 * (i + 1)
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(ours.state.values(), torchs.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
