"""Preference pairs on the toy token world, with known ground truth (docs/toy_world.md).

Two completions of a prompt are drawn independently from the exact max-entropy prior; the
preference between them is drawn from Bradley–Terry on the true add-on reward,
P(y1 ≻ y2) = σ(r_R(y1) − r_R(y2)). Under that model the population optimum of DPO with β is
π ∝ π_prior·exp(r_R/β) and that of decoupled DPO is π ∝ π_prior^(ω'/α̂)·exp(r_R/α̂) (paper eq. 25),
which the toy world computes exactly.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from rpg_llm.toy.world import ToyWorld

__all__ = ["sample_preference_pairs", "implicit_reward_accuracy"]


def sample_preference_pairs(world: ToyWorld, num_pairs: int, seed: int = 0) -> Dataset:
    """``num_pairs`` Bradley–Terry-labelled pairs of distinct prior completions, in TRL's format.

    Columns: ``prompt`` / ``chosen`` / ``rejected`` (text; completions start with a space),
    ``label`` = σ(r_R(chosen) − r_R(rejected)), the probability that an annotator who follows
    Bradley–Terry prefers the chosen side (the soft label of the ``ce`` loss, eq. 24), and
    ``prompt_index`` / ``chosen_index`` / ``rejected_index`` into ``world.prompts`` and
    ``world.all_completions()`` for exact evaluation.
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    generator = torch.Generator().manual_seed(seed)
    prior_probs = world.exact_prior_log_probs().exp()  # [prompts, completions]
    _, addon = world.completion_rewards()  # [prompts, completions]
    completions = world.all_completions()
    prompt_parts, chosen_parts, rejected_parts, margin_parts = [], [], [], []
    collected = 0
    while collected < num_pairs:
        prompt_index = torch.randint(len(world.prompts), (num_pairs,), generator=generator)
        pair = torch.multinomial(prior_probs[prompt_index], 2, replacement=True, generator=generator)  # [n, 2]
        distinct = pair[:, 0] != pair[:, 1]  # identical completions carry no preference
        prompt_index, pair = prompt_index[distinct], pair[distinct]
        reward = addon[prompt_index.unsqueeze(-1), pair]  # [n, 2]
        first_wins = torch.rand(len(pair), generator=generator) < torch.sigmoid(reward[:, 0] - reward[:, 1])
        prompt_parts.append(prompt_index)
        chosen_parts.append(torch.where(first_wins, pair[:, 0], pair[:, 1]))
        rejected_parts.append(torch.where(first_wins, pair[:, 1], pair[:, 0]))
        margin_parts.append(torch.where(first_wins, reward[:, 0] - reward[:, 1], reward[:, 1] - reward[:, 0]))
        collected += len(pair)
    prompt_index, chosen, rejected, margin = (
        torch.cat(parts)[:num_pairs] for parts in (prompt_parts, chosen_parts, rejected_parts, margin_parts)
    )
    texts = [" " + " ".join(world.words[w] for w in row) for row in completions.tolist()]
    rows = {
        "prompt": [world.prompts[p] for p in prompt_index.tolist()],
        "chosen": [texts[c] for c in chosen.tolist()],
        "rejected": [texts[r] for r in rejected.tolist()],
        "label": torch.sigmoid(margin).tolist(),
        "prompt_index": prompt_index.tolist(),
        "chosen_index": chosen.tolist(),
        "rejected_index": rejected.tolist(),
    }
    return Dataset.from_dict(rows)


def implicit_reward_accuracy(implicit_rewards: torch.Tensor, pairs: Dataset, tie: float = 0.0) -> float:
    """Fraction of ``pairs`` whose chosen completion gets the larger implicit reward.

    ``implicit_rewards`` is [prompts, completions], e.g. β·(log πθ − log π_ref) for DPO and CE or
    α̂·log πθ − ω'·log π_ref for decoupled DPO (eq. 25), from exact enumeration. A tie scores
    ``tie`` (½ to score the true r_R, whose many ties a coin would break).
    """
    prompt = torch.tensor(pairs["prompt_index"])
    chosen = implicit_rewards[prompt, torch.tensor(pairs["chosen_index"])]
    rejected = implicit_rewards[prompt, torch.tensor(pairs["rejected_index"])]
    return float(((chosen > rejected).double() + tie * (chosen == rejected).double()).mean())
