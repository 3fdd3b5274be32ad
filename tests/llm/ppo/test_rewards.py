"""Per-token rewards of Residual PPO: rpg's formula, the classic RLHF special case, and where r_R lands."""

import pytest
import torch

from rpg.reward import RewardCoefficients, residual_reward
from rpg_llm.ppo.sampling import completion_mask_from_eos
from rpg_llm.ppo.trainer import last_token_index, token_level_rewards

EOS, PAD = 1, 0


def _batch(seed=0, batch=4, length=6):
    g = torch.Generator().manual_seed(seed)
    policy = -torch.rand(batch, length, generator=g, dtype=torch.float64) * 3
    ref = -torch.rand(batch, length, generator=g, dtype=torch.float64) * 3
    scores = torch.randn(batch, generator=g, dtype=torch.float64)
    return policy, ref, scores


def test_rewards_are_rpg_formula_on_every_token_plus_addon_at_the_last():
    policy, ref, scores = _batch()
    mask = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool
    )
    c = RewardCoefficients.residual(0.7, 0.2)
    rewards = token_level_rewards(scores, policy, ref, mask, c)
    last = torch.tensor([5, 2, 0, 4])
    for b in range(4):
        for t in range(6):
            expected = 0.0
            if mask[b, t]:
                expected = 0.7 * ref[b, t] - 0.2 * policy[b, t] + (scores[b] if t == last[b] else 0.0)
            assert rewards[b, t].item() == pytest.approx(float(expected), abs=1e-12)
    # And it is rpg.reward.residual_reward itself, not a copy of it.
    addon = torch.zeros_like(policy)
    addon[torch.arange(4), last] = scores
    torch.testing.assert_close(rewards, residual_reward(addon, policy, ref, c) * mask)


def test_equal_coefficients_give_the_classic_kl_penalized_rlhf_reward():
    policy, ref, scores = _batch(seed=1)
    mask = torch.ones_like(policy, dtype=torch.bool)
    beta = 0.05
    rewards = token_level_rewards(scores, policy, ref, mask, RewardCoefficients.kl(beta))
    classic = -beta * (policy - ref)  # Ziegler et al.: −β·KL per token, score at the end
    classic[:, -1] += scores
    torch.testing.assert_close(rewards, classic)
    # Summed over the sequence: r_R − β·(log πθ(y) − log π_ref(y)).
    torch.testing.assert_close(rewards.sum(-1), scores - beta * (policy.sum(-1) - ref.sum(-1)))


def test_eos_mask_keeps_the_eos_and_drops_what_follows():
    ids = torch.tensor([[5, 6, EOS, PAD, PAD], [5, 6, 7, 8, 9], [EOS, PAD, PAD, PAD, PAD], [5, EOS, 7, EOS, 3]])
    mask = completion_mask_from_eos(ids, EOS)
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_addon_lands_on_the_eos_with_early_stop_and_on_the_last_sampled_token_without():
    ids = torch.tensor([[5, 6, EOS, PAD, PAD], [5, 6, 7, 8, 9], [EOS, PAD, PAD, PAD, PAD]])
    mask = completion_mask_from_eos(ids, EOS)
    scores = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    zeros = torch.zeros(3, 5, dtype=torch.float64)
    rewards = token_level_rewards(scores, zeros, zeros, mask, RewardCoefficients.residual(0.3, 0.1))
    expected = torch.zeros(3, 5, dtype=torch.float64)
    expected[0, 2], expected[1, 4], expected[2, 0] = 1.0, 2.0, 3.0
    assert torch.equal(rewards, expected)


def test_addon_lands_on_the_last_real_token_with_left_padding():
    # Full sequences [left pad | prompt | completion | right pad]: the score goes to the last real token.
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert last_token_index(mask).tolist() == [5, 6, 2]
    scores = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    zeros = torch.zeros(3, 7, dtype=torch.float64)
    rewards = token_level_rewards(scores, zeros, zeros, mask, RewardCoefficients.greedy(0.1))
    assert rewards[0, 5] == 1.0 and rewards[1, 6] == -2.0 and rewards[2, 2] == 0.5
    assert rewards.abs().sum() == scores.abs().sum()
    with pytest.raises(ValueError, match="at least one real token"):
        last_token_index(torch.zeros(1, 3, dtype=torch.bool))
