"""Sampling completions from a causal LM at temperature 1, keeping the sampling log-probabilities.

Residual PPO puts −α̂·log πθ(a|s) into the reward (eq. 8), so the log-probability must be that of
the distribution the token was actually drawn from: plain softmax of the logits, temperature 1,
no top-k / top-p. This sampler returns exactly those log-probs (and the entropies), so the trainer
can use them as the PPO "old" log-probs without a second forward pass; a test checks that they
equal the training forward's log-probs for the same tokens.

The loop is a plain KV-cached decode (``model(..., past_key_values=...)``) rather than
``generate``: fewer moving parts, works for any ``AutoModelForCausalLM`` (and peft wrappers), and
on tiny models avoids ``generate``'s per-step overhead.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

__all__ = ["Completions", "position_ids_from_mask", "sample_completions", "completion_mask_from_eos", "suppress_tokens"]


@dataclass
class Completions:
    """A batch of sampled completions, right-padded to ``max_new_tokens``."""

    completion_ids: torch.Tensor  # [B, L] long; pad after the first EOS
    completion_mask: torch.Tensor  # [B, L] bool; real tokens, EOS included
    logprobs: torch.Tensor  # [B, L] float32; log πθ of the sampled token (0 on padding)
    entropies: torch.Tensor  # [B, L] float32; H(πθ(·|s_t)) (0 on padding)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def completion_mask_from_eos(completion_ids: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """True up to and including the first EOS of each row (everything if no EOS)."""
    if eos_token_id is None:
        return torch.ones_like(completion_ids, dtype=torch.bool)
    is_eos = completion_ids == eos_token_id
    # Number of EOS strictly before position t; real iff it is 0.
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    return eos_before == 0


def suppress_tokens(logits: torch.Tensor, token_ids) -> torch.Tensor:
    """``logits`` with ``token_ids`` set to the lowest finite value: probability 0 after any softmax.

    The law is then the model's, renormalized over the other tokens. Finite (not −inf) so that
    p·log p stays 0 in entropies. ``token_ids`` None or empty: ``logits`` unchanged.
    """
    if not token_ids:
        return logits
    logits = logits.clone()
    logits[..., list(token_ids)] = torch.finfo(logits.dtype).min
    return logits


def _cache_argument(model) -> str:
    """Name of the KV-cache argument/output: ``cache`` in transformers ≥ 5.2x, else ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def sample_completions(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    suppress_token_ids: list[int] | None = None,
    greedy: bool = False,
) -> Completions:
    """Sample ``max_new_tokens`` tokens per row from ``model`` at temperature 1 (``greedy``: the argmax).

    ``input_ids`` / ``attention_mask`` are left-padded prompts [B, P]. Rows stop at their first
    ``eos_token_id`` (the trainer's stop token; None: never stop, every row is ``max_new_tokens`` long);
    later positions hold ``pad_token_id`` with mask False, log-prob and entropy 0.
    ``suppress_token_ids`` are never sampled (:func:`suppress_tokens`); log-probs and entropies are
    those of the renormalized law the tokens are drawn from.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    batch = input_ids.shape[0]
    device = input_ids.device
    attention_mask = attention_mask.long()
    positions = position_ids_from_mask(attention_mask)
    cache_name = _cache_argument(model)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    cache = getattr(out, cache_name)
    logits = out.logits[:, -1, :].float()
    next_position = positions[:, -1:] + 1
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, logprobs, entropies, masks = [], [], [], []
    for step in range(max_new_tokens):
        # One log-softmax per step gives the sampling law, the token's log-prob and the entropy
        # (TRL's selective_log_softmax loops over rows: 32 logsumexp calls per step at k·P = 32).
        step_logprobs = torch.log_softmax(suppress_tokens(logits, suppress_token_ids), dim=-1)
        probs = step_logprobs.exp()
        token = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        live = ~finished
        token = torch.where(live, token, torch.full_like(token, pad_token_id))
        token_logprob = step_logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1)
        logprobs.append(torch.where(live, token_logprob, torch.zeros_like(token_logprob)))
        entropies.append(torch.where(live, -(probs * step_logprobs).sum(-1), torch.zeros_like(token_logprob)))
        tokens.append(token)
        masks.append(live)
        if eos_token_id is not None:
            finished = finished | (token == eos_token_id)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
        out = model(
            input_ids=token.unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=next_position,
            use_cache=True,
            **{cache_name: cache},
        )
        cache = getattr(out, cache_name)
        logits = out.logits[:, -1, :].float()
        next_position = next_position + 1
    pad_steps = max_new_tokens - len(tokens)
    completion_ids = torch.stack(tokens, dim=1)
    completion_mask = torch.stack(masks, dim=1)
    logprobs_t = torch.stack(logprobs, dim=1)
    entropies_t = torch.stack(entropies, dim=1)
    if pad_steps:
        completion_ids = torch.nn.functional.pad(completion_ids, (0, pad_steps), value=pad_token_id)
        completion_mask = torch.nn.functional.pad(completion_mask, (0, pad_steps), value=False)
        logprobs_t = torch.nn.functional.pad(logprobs_t, (0, pad_steps), value=0.0)
        entropies_t = torch.nn.functional.pad(entropies_t, (0, pad_steps), value=0.0)
    return Completions(completion_ids, completion_mask, logprobs_t, entropies_t)
