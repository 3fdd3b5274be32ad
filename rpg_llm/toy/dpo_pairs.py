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
    ``prompt_index`` into ``world.prompts``. On a world small enough to enumerate, completions are drawn
    from the exact prior over ``world.all_completions()`` and ``chosen_index`` / ``rejected_index`` index
    it (for exact evaluation); on a larger one they are drawn by ancestral sampling from the exact prior's
    per-token policy (``world.sample_exact``, the same law) and carry no index.
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    generator = torch.Generator().manual_seed(seed)
    parts = {key: [] for key in ("prompt", "chosen", "rejected", "margin", "chosen_index", "rejected_index")}
    prior_probs = world.exact_prior_log_probs().exp() if world.enumerable else None  # [prompts, V^L]
    collected = 0
    while collected < num_pairs:
        prompt_index = torch.randint(len(world.prompts), (num_pairs,), generator=generator)
        if prior_probs is not None:
            pair = torch.multinomial(prior_probs[prompt_index], 2, replacement=True, generator=generator)
            completions = world.all_completions()[pair]  # [n, 2, L]
        else:
            draws = [world.sample_exact(prompt_index, generator) for _ in range(2)]
            completions, pair = torch.stack(draws, dim=1), None
        distinct = (completions[:, 0] != completions[:, 1]).any(-1)  # identical completions carry no preference
        prompt_index, completions = prompt_index[distinct], completions[distinct]
        prompt_ids = (torch.tensor(world.prompt_words)[prompt_index] + world.num_special).repeat_interleave(2, 0)
        reward = world.addon_reward(prompt_ids, completions.flatten(0, 1) + world.num_special).double().view(-1, 2)
        first_wins = torch.rand(len(completions), generator=generator) < torch.sigmoid(reward[:, 0] - reward[:, 1])
        chosen_side = (~first_wins).long()  # column of the chosen completion: 0 when the first wins
        rejected_side = 1 - chosen_side
        row_index = torch.arange(len(completions))
        parts["prompt"].append(prompt_index)
        parts["chosen"].append(completions[row_index, chosen_side])
        parts["rejected"].append(completions[row_index, rejected_side])
        parts["margin"].append(reward[row_index, chosen_side] - reward[row_index, rejected_side])
        if pair is not None:
            pair = pair[distinct]
            parts["chosen_index"].append(pair[row_index, chosen_side])
            parts["rejected_index"].append(pair[row_index, rejected_side])
        collected += len(completions)
    picked = {key: torch.cat(values)[:num_pairs] for key, values in parts.items() if values}

    def text(completions: torch.Tensor) -> list[str]:
        return [" " + " ".join(world.words[w] for w in row) for row in completions.tolist()]

    rows = {
        "prompt": [world.prompts[p] for p in picked["prompt"].tolist()],
        "chosen": text(picked["chosen"]),
        "rejected": text(picked["rejected"]),
        "label": torch.sigmoid(picked["margin"]).tolist(),
        "prompt_index": picked["prompt"].tolist(),
    }
    if "chosen_index" in picked:
        rows.update(chosen_index=picked["chosen_index"].tolist(), rejected_index=picked["rejected_index"].tolist())
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
