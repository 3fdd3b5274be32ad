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
    assert_better_side_wins_with_probability_sigma_1(chosen_reward - rejected_reward)


def assert_better_side_wins_with_probability_sigma_1(margin: torch.Tensor) -> None:
    """Among pairs whose rewards differ by exactly 1, the better one is chosen with probability σ(1)."""
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


def test_pairs_of_a_world_too_large_to_enumerate_come_from_the_same_law(world, monkeypatch):
    # Past max_enumeration the pairs are drawn by ancestral sampling from the exact prior (dynamic programming):
    # the same law as the enumerated draws, so the chosen side's mean r_R agrees within 4 standard errors.
    def addon(pairs, side="chosen"):
        prompt_ids = torch.tensor(world.prompt_words)[torch.tensor(pairs["prompt_index"])] + world.num_special
        words = torch.tensor([[world.words.index(w) for w in text.split()] for text in pairs[side]])
        return world.addon_reward(prompt_ids, words + world.num_special).double()

    enumerated = addon(sample_preference_pairs(world, 6000, seed=1))
    monkeypatch.setattr(world.config, "max_enumeration", 10)  # pretend V^L is too large to enumerate
    pairs = sample_preference_pairs(world, 6000, seed=2)
    assert "chosen_index" not in pairs.column_names and all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"]))
    sampled = addon(pairs)
    labels = torch.tensor(pairs["label"], dtype=torch.float64)
    torch.testing.assert_close(labels, torch.sigmoid(sampled - addon(pairs, "rejected")))
    assert_better_side_wins_with_probability_sigma_1(sampled - addon(pairs, "rejected"))
    stderr = math.sqrt(enumerated.var() / len(enumerated) + sampled.var() / len(sampled))
    assert abs(float(enumerated.mean() - sampled.mean())) < 4 * stderr


def test_implicit_reward_accuracy_counts_ties_as_asked(world):
    pairs = sample_preference_pairs(world, 200, seed=0)
    constant = torch.zeros(len(world.prompts), len(world.all_completions()))
    assert implicit_reward_accuracy(constant, pairs) == 0.0
    assert implicit_reward_accuracy(constant, pairs, tie=0.5) == 0.5
    _, addon = world.completion_rewards()
    # Ranking by the true r_R (the label's source) agrees with the BT-sampled labels more often than not.
    assert implicit_reward_accuracy(addon, pairs, tie=0.5) > 0.55
