"""A tiny word-level causal LM and a random preference dataset, built locally, for tests and benchmarks.

Nothing here touches a hub: the tokenizer and model shapes come from :mod:`rpg_llm.toy.tiny_llama`; both
are saved to a directory and meant to be loaded back with ``from_pretrained``, the path a real model takes.
(Benchmarks import this module with ``tests/`` on ``sys.path``.)
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import Dataset
from transformers import LlamaForCausalLM

from rpg_llm.toy.tiny_llama import tiny_llama_config, word_tokenizer

__all__ = ["SPECIAL_TOKENS", "build_tiny_causal_lm", "random_preference_dataset"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}


def build_tiny_causal_lm(
    directory: str | Path,
    num_words: int = 16,
    hidden_size: int = 16,
    num_layers: int = 1,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer (words ``w0..w{n-1}``) to ``directory``."""
    directory = Path(directory)
    tokenizer = word_tokenizer([f"w{index}" for index in range(num_words)], SPECIAL_TOKENS)
    torch.manual_seed(seed)
    config = tiny_llama_config(
        tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=2, max_positions=128
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger-than-default weights so sequence log-probs differ visibly between models
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def random_preference_dataset(
    num_pairs: int,
    num_words: int = 16,
    prompt_length: int = 3,
    max_completion_length: int = 4,
    seed: int = 0,
    with_labels: bool = False,
) -> Dataset:
    """Random ``prompt`` / ``chosen`` / ``rejected`` word strings (completions of varying length)."""
    rng = random.Random(seed)

    def words(count: int) -> str:
        return " ".join(f"w{rng.randrange(num_words)}" for _ in range(count))

    rows = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(num_pairs):
        rows["prompt"].append(words(prompt_length))
        rows["chosen"].append(" " + words(rng.randint(1, max_completion_length)))
        rows["rejected"].append(" " + words(rng.randint(1, max_completion_length)))
    if with_labels:
        rows["label"] = [rng.random() for _ in range(num_pairs)]
    return Dataset.from_dict(rows)
