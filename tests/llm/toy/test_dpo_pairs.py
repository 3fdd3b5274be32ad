"""Toy-world preference pairs: Bradley–Terry on the true r_R, soft labels, indices that match the text."""

from __future__ import annotations

import math

import pytest
import torch

from rpg_llm.toy.dpo_pairs import implicit_reward_accuracy, sample_preference_pairs


@pytest.fixture(scope="module")
def world(toy_world):
    return toy_world()  # the default world, in the shared cache


def test_pairs_follow_bradley_terry_on_the_addon_reward(world):
    pairs = sample_preference_pairs(world, 8000, seed=3)
    _, addon = world.completion_rewards()
    prompt = torch.tensor(pairs["prompt_index"])
    chosen_reward = addon[prompt, torch.tensor(pairs["chosen_index"])]
    rejected_reward = addon[prompt, torch.tensor(pairs["rejected_index"])]
    assert pairs["chosen_index"] != pairs["rejected_index"] and all(
        c != r for c, r in zip(pairs["chosen_index"], pairs["rejected_index"])
    )
    torch.testing.assert_close(
        torch.tensor(pairs["label"], dtype=torch.float64), torch.sigmoid(chosen_reward - rejected_reward)
    )
    # Among pairs whose rewards differ by exactly 1, the better one wins with probability σ(1).
    margin = chosen_reward - rejected_reward
    differ_by_one = margin.abs() == 1
    wins = (margin[differ_by_one] > 0).double()
    expected = 1 / (1 + math.exp(-1))
    assert abs(wins.mean().item() - expected) < 4 * math.sqrt(expected * (1 - expected) / len(wins))


def test_pair_text_matches_its_indices(world):
    pairs = sample_preference_pairs(world, 50, seed=0)
    completions = world.all_completions()
    for row in pairs:
        assert row["prompt"] == world.prompts[row["prompt_index"]]
        for side in ("chosen", "rejected"):
            words = [world.words[w] for w in completions[row[f"{side}_index"]].tolist()]
            assert row[side] == " " + " ".join(words)


def test_implicit_reward_accuracy_counts_ties_as_asked(world):
    pairs = sample_preference_pairs(world, 200, seed=0)
    constant = torch.zeros(len(world.prompts), len(world.all_completions()))
    assert implicit_reward_accuracy(constant, pairs) == 0.0
    assert implicit_reward_accuracy(constant, pairs, tie=0.5) == 0.5
    _, addon = world.completion_rewards()
    # Ranking by the true r_R (the label's source) agrees with the BT-sampled labels more often than not.
    assert implicit_reward_accuracy(addon, pairs, tie=0.5) > 0.55
