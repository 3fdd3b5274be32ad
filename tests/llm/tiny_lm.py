"""A tiny word-level causal LM and preference dataset, built locally, for tests and benchmarks.

Nothing here touches a hub: the tokenizer is a ``tokenizers`` WordLevel model wrapped in
``PreTrainedTokenizerFast``, the model a small ``LlamaConfig``; both are saved to a directory and
meant to be loaded back with ``from_pretrained``, the path a real model takes.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "build_word_tokenizer", "build_tiny_causal_lm", "random_preference_dataset"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}


def build_word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """Whitespace-split word tokenizer over ``words`` plus ``SPECIAL_TOKENS`` (ids 0-3)."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS.values())}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL_TOKENS)


def build_tiny_causal_lm(
    directory: str | Path,
    num_words: int = 16,
    hidden_size: int = 16,
    num_layers: int = 1,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer (words ``w0..w{n-1}``) to ``directory``."""
    directory = Path(directory)
    tokenizer = build_word_tokenizer([f"w{index}" for index in range(num_words)])
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
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
