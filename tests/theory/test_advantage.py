"""GAE against plain-loop references (truncation, termination, padding) and masked whitening."""

import pytest
import torch

from rpg.advantage import env_gae, generalized_advantage_estimation, masked_gae, masked_mean, masked_var, whiten


def _reference_env_gae(rewards, values, last_values, terminated, truncated, final_values, gamma, lam):
    """Per-env, per-episode loop written from the textbook definition."""
    T, N = rewards.shape
    advantages = torch.zeros(T, N, dtype=rewards.dtype)
    for n in range(N):
        next_adv = 0.0
        for t in reversed(range(T)):
            if terminated[t, n]:
                next_value, next_adv = 0.0, 0.0  # terminal: nothing follows
            elif truncated[t, n]:
                next_value, next_adv = final_values[t, n].item(), 0.0  # cut: bootstrap, stop recursion
            else:
                next_value = last_values[n].item() if t == T - 1 else values[t + 1, n].item()
            delta = rewards[t, n].item() + gamma * next_value - values[t, n].item()
            next_adv = delta + gamma * lam * next_adv
            advantages[t, n] = next_adv
    return advantages


@pytest.mark.parametrize("seed", range(5))
def test_env_gae_matches_reference_with_terminations_and_truncations(seed):
    g = torch.Generator().manual_seed(seed)
    T, N = 23, 6
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    last_values = torch.randn(N, generator=g, dtype=torch.float64)
    final_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    terminated = torch.rand(T, N, generator=g) < 0.1
    truncated = torch.rand(T, N, generator=g) < 0.1
    gamma, lam = 0.99, 0.95
    adv, ret = env_gae(rewards, values, last_values, terminated, truncated, gamma, lam, final_values)
    expected = _reference_env_gae(rewards, values, last_values, terminated, truncated, final_values, gamma, lam)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, expected + values, rtol=1e-12, atol=1e-12)


def test_env_gae_without_final_values_expects_bootstrap_in_the_reward():
    g = torch.Generator().manual_seed(9)
    T, N, gamma, lam = 12, 3, 0.9, 0.8
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    last_values = torch.randn(N, generator=g, dtype=torch.float64)
    final_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.rand(T, N, generator=g) < 0.3
    folded = rewards + gamma * final_values * truncated
    a1, _ = env_gae(folded, values, last_values, terminated, truncated, gamma, lam)
    a2, _ = env_gae(rewards, values, last_values, terminated, truncated, gamma, lam, final_values)
    torch.testing.assert_close(a1, a2, rtol=1e-12, atol=1e-12)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = torch.ones(1, 2, dtype=torch.float64)
    values = torch.zeros(1, 2, dtype=torch.float64)
    final = torch.full((1, 2), 10.0, dtype=torch.float64)
    adv, _ = env_gae(
        rewards, values, torch.zeros(2), torch.tensor([[True, False]]), torch.tensor([[False, True]]), 0.5, 1.0, final
    )
    assert adv.tolist() == [[1.0, 1.0 + 0.5 * 10.0]]


def test_lambda_one_gives_monte_carlo_returns():
    g = torch.Generator().manual_seed(3)
    T, gamma = 9, 0.97
    rewards = torch.randn(T, 1, generator=g, dtype=torch.float64)
    values = torch.randn(T, 1, generator=g, dtype=torch.float64)
    terminated = torch.zeros(T, 1, dtype=torch.bool)
    terminated[-1] = True
    _, returns = env_gae(rewards, values, torch.zeros(1), terminated, torch.zeros_like(terminated), gamma, 1.0)
    mc = torch.zeros(T, dtype=torch.float64)
    running = 0.0
    for t in reversed(range(T)):
        running = rewards[t, 0].item() + gamma * running
        mc[t] = running
    torch.testing.assert_close(returns[:, 0], mc, rtol=1e-12, atol=1e-12)


def _reference_token_gae(rewards, values, mask, gamma, lam):
    """Each row: extract its real tokens, run GAE on them as one terminating episode."""
    advantages = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        idx = mask[b].nonzero().flatten().tolist()
        next_adv, next_value = 0.0, 0.0
        for i in reversed(idx):
            delta = rewards[b, i].item() + gamma * next_value - values[b, i].item()
            next_adv = delta + gamma * lam * next_adv
            advantages[b, i] = next_adv
            next_value = values[b, i].item()
    return advantages


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.7)])
def test_masked_gae_matches_reference(padding, gamma, lam):
    g = torch.Generator().manual_seed(11)
    B, T = 7, 10
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    positions = torch.arange(T).expand(B, T)
    mask = positions < lengths[:, None] if padding == "right" else positions >= (T - lengths)[:, None]
    adv, ret = masked_gae(rewards, values, mask, gamma, lam)
    expected = _reference_token_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, (expected + values) * mask, rtol=1e-12, atol=1e-12)
    assert torch.all(adv[~mask] == 0) and torch.all(ret[~mask] == 0)


def test_padding_values_cannot_leak():
    g = torch.Generator().manual_seed(12)
    rewards = torch.randn(3, 6, generator=g)
    values = torch.randn(3, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1] * 6]).bool()
    garbage = values.clone()
    garbage[~mask] = 1e6
    rewards_garbage = rewards.clone()
    rewards_garbage[~mask] = -1e6
    torch.testing.assert_close(masked_gae(rewards, values, mask)[0], masked_gae(rewards_garbage, garbage, mask)[0])


def test_core_rejects_mismatched_shapes():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="share one shape"):
        generalized_advantage_estimation(x, x, torch.zeros(3, 3), x.bool(), x.bool(), 1.0, 1.0)


def test_whiten_with_mask_equals_whiten_of_the_real_entries():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64) * 3 + 2
    mask = torch.rand(4, 9, generator=g) < 0.6
    out = whiten(x, mask)
    torch.testing.assert_close(out[mask], whiten(x[mask]), rtol=1e-12, atol=1e-12)
    assert torch.all(out[~mask] == 0)
    assert masked_mean(out, mask).abs() < 1e-12
    assert (masked_var(out, mask) - 1).abs() < 1e-6
    kept = whiten(x, mask, shift_mean=False)
    # shift_mean=False keeps the mean (as TRL's masked_whiten does): only the scale changes.
    torch.testing.assert_close(masked_mean(kept, mask), masked_mean(x, mask), rtol=1e-9, atol=1e-9)
