"""Word-level tokenizer and tiny Llama shapes: the one builder behind the toy world's prior, the tests'
tiny models and the benchmarks' assets.

Everything is built locally (no hub): the tokenizer is a ``tokenizers`` WordLevel model wrapped in
``PreTrainedTokenizerFast``, the model a small ``LlamaConfig``; saved with ``save_pretrained``, both load
back through ``from_pretrained``, the path a real model takes.
"""

from __future__ import annotations

__all__ = ["TOY_SPECIAL_TOKENS", "word_tokenizer", "tiny_llama_config"]

# The toy world's special tokens (ids 0 and 1): padding doubles as the unknown token.
TOY_SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>"}


def word_tokenizer(words: list[str], special_tokens: dict[str, str] = TOY_SPECIAL_TOKENS):
    """Whitespace-split tokenizer: ``special_tokens`` take ids 0..k−1 in order, then ``words``; left padding.

    ``special_tokens`` maps tokenizer roles (``pad_token``, ``eos_token``, ``bos_token``, ``unk_token``) to
    strings; without an ``unk_token`` the pad token stands in. Decoding joins words with spaces.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if "pad_token" not in special_tokens:
        raise ValueError(f"special_tokens needs a pad_token (prompts are left-padded); got {special_tokens}")
    vocab: dict[str, int] = {}
    for token in [*special_tokens.values(), *words]:
        vocab.setdefault(token, len(vocab))
    unknown = special_tokens.get("unk_token", special_tokens["pad_token"])
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unknown))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **special_tokens)


def tiny_llama_config(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, max_positions: int, **extra):
    """A ``LlamaConfig`` over ``tokenizer``'s vocabulary and special ids: MLP width 2·hidden, untied embeddings.

    ``extra`` goes to ``LlamaConfig`` as is (e.g. ``num_labels=1`` for a reward model).
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **extra,
    )
