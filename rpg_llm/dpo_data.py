"""Preference pairs on the toy token world, with known ground truth (SPEC §3).

Two completions of a prompt are drawn independently from the exact max-entropy prior; the
preference between them is drawn from Bradley–Terry on the true add-on reward,
P(y1 ≻ y2) = σ(r_R(y1) − r_R(y2)). Under that model the population optimum of DPO with β is
π ∝ π_prior·exp(r_R/β) and that of decoupled DPO is π ∝ π_prior^(ω'/α̂)·exp(r_R/α̂) (paper eq. 25),
which the toy world computes exactly.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from rpg_llm.toy_world import ToyWorld

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
    rows = {key: [] for key in ("prompt", "chosen", "rejected", "label", "prompt_index", "chosen_index", "rejected_index")}
    while len(rows["prompt"]) < num_pairs:
        prompt_index = torch.randint(len(world.prompts), (num_pairs,), generator=generator)
        pair = torch.multinomial(prior_probs[prompt_index], 2, replacement=True, generator=generator)  # [n, 2]
        distinct = pair[:, 0] != pair[:, 1]  # identical completions carry no preference
        prompt_index, pair = prompt_index[distinct], pair[distinct]
        reward = addon[prompt_index.unsqueeze(-1), pair]  # [n, 2]
        first_wins = torch.rand(len(pair), generator=generator) < torch.sigmoid(reward[:, 0] - reward[:, 1])
        chosen = torch.where(first_wins, pair[:, 0], pair[:, 1])
        rejected = torch.where(first_wins, pair[:, 1], pair[:, 0])
        margin = torch.where(first_wins, reward[:, 0] - reward[:, 1], reward[:, 1] - reward[:, 0])
        for p, c, r, m in zip(prompt_index.tolist(), chosen.tolist(), rejected.tolist(), margin.tolist()):
            if len(rows["prompt"]) == num_pairs:
                break
            rows["prompt"].append(world.prompts[p])
            rows["chosen"].append(" " + " ".join(world.words[w] for w in completions[c].tolist()))
            rows["rejected"].append(" " + " ".join(world.words[w] for w in completions[r].tolist()))
            rows["label"].append(float(torch.sigmoid(torch.tensor(m))))
            rows["prompt_index"].append(p)
            rows["chosen_index"].append(c)
            rows["rejected_index"].append(r)
    return Dataset.from_dict(rows)


def implicit_reward_accuracy(implicit_rewards: torch.Tensor, pairs: Dataset) -> float:
    """Fraction of ``pairs`` whose chosen completion gets the larger implicit reward.

    ``implicit_rewards`` is [prompts, completions], e.g. β·(log πθ − log π_ref) for DPO and CE or
    α̂·log πθ − ω'·log π_ref for decoupled DPO (eq. 25), from exact enumeration.
    """
    prompt = torch.tensor(pairs["prompt_index"])
    chosen = implicit_rewards[prompt, torch.tensor(pairs["chosen_index"])]
    rejected = implicit_rewards[prompt, torch.tensor(pairs["rejected_index"])]
    return float((chosen > rejected).double().mean())
