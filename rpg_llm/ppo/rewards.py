"""Where r_R (the add-on reward, paid at a completion's last token) comes from.

* Python reward functions in TRL's signature ``f(prompts, completions, **kwargs) -> list[float]``
  (``completion_ids`` and the dataset's other columns arrive as keyword arguments, as in TRL);
* a reward model (``AutoModelForSequenceClassification`` with one label), scored on the text
  prompt + completion with its own tokenizer, so it need not share the policy's vocabulary.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable, Sequence

import torch

__all__ = ["FunctionRewards", "RewardModelScorer", "import_reward_function"]


def import_reward_function(spec: str) -> Callable:
    """``"package.module:function"`` → the function (one clear error if it is not there)."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"reward function {spec!r} must be written 'module:function'")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import reward function {spec!r}: {error}") from None
    if not callable(function):
        raise ValueError(f"reward function {spec!r} is not callable")
    return function


class FunctionRewards:
    """Weighted sum of reward functions with TRL's signature."""

    def __init__(self, functions: Sequence[Callable | str], weights: Sequence[float] | None = None) -> None:
        self.functions = [import_reward_function(f) if isinstance(f, str) else f for f in functions]
        if not self.functions:
            raise ValueError("at least one reward function is needed")
        self.weights = [1.0] * len(self.functions) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.functions):
            raise ValueError("one weight per reward function is needed")
        self.names = [getattr(f, "__name__", type(f).__name__) for f in self.functions]

    def check_signature(self, columns: Sequence[str] = ()) -> None:
        """Fail in one line, before any rollout, on a function TRL's call would not fit.

        Each is called as ``f(prompts=..., completions=..., completion_ids=..., **columns)`` with the
        dataset's other columns (``columns``) as keyword arguments.
        """
        arguments = {"prompts": [], "completions": [], "completion_ids": [], **{name: [] for name in columns}}
        for name, function in zip(self.names, self.functions):
            try:
                signature = inspect.signature(function)
            except (TypeError, ValueError):  # builtins without a signature: nothing to check
                continue
            try:
                signature.bind(**arguments)
            except TypeError as error:
                raise ValueError(
                    f"reward function {name}{signature} cannot be called as f(prompts=..., completions=..., "
                    f"completion_ids=..., **{{dataset columns {sorted(columns)}}}) ({error}); add **kwargs"
                ) from None

    def __call__(
        self, prompts: list, completions: list, completion_ids: list[list[int]], **columns
    ) -> tuple[torch.Tensor, dict]:
        total = torch.zeros(len(completions))
        parts = {}
        for name, weight, function in zip(self.names, self.weights, self.functions):
            scores = function(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
            scores = torch.tensor([float("nan") if s is None else float(s) for s in scores])
            if scores.shape != total.shape:
                raise ValueError(
                    f"reward function {name} returned {len(scores)} scores for {len(completions)} completions"
                )
            if not torch.isfinite(scores).all():
                bad = scores[~torch.isfinite(scores)][0].item()
                raise ValueError(
                    f"reward function {name} returned {bad} (None/NaN/±inf); every completion needs a finite score"
                )
            parts[name] = scores
            total += weight * scores
        return total, parts


class RewardModelScorer:
    """r_R = the scalar logit of a sequence-classification reward model on prompt + completion."""

    def __init__(self, model, tokenizer, batch_size: int = 64) -> None:
        if getattr(model.config, "num_labels", 1) != 1:
            raise ValueError(f"a reward model needs num_labels=1, got {model.config.num_labels}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = None  # set by the trainer (a DeepSpeed-sharded model's parameters do not say where inputs go)
        if self.tokenizer.pad_token is None:
            raise ValueError("the reward model's tokenizer has no pad token; set one (e.g. pad_token = eos_token)")
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "RewardModelScorer":
        """Model and tokenizer from ``path``; ``kwargs`` (the trainer's ``model_init_kwargs``: revision, dtype,
        trust_remote_code, ...) reach the model's ``from_pretrained``, revision and trust_remote_code the
        tokenizer's."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer_kwargs = {key: kwargs[key] for key in ("revision", "trust_remote_code", "token") if key in kwargs}
        tokenizer = AutoTokenizer.from_pretrained(path, **tokenizer_kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
        return cls(model, tokenizer)

    def _texts(self, prompts: list, completions: list) -> list[str]:
        texts = []
        for prompt, completion in zip(prompts, completions):
            if isinstance(prompt, list):  # conversational: the reward model's chat template
                texts.append(self.tokenizer.apply_chat_template(prompt + completion, tokenize=False))
            else:
                texts.append(prompt + completion)
        return texts

    @torch.no_grad()
    def __call__(self, prompts: list, completions: list, completion_ids=None, **columns) -> tuple[torch.Tensor, dict]:
        device = self.device or next(self.model.parameters()).device
        texts = self._texts(prompts, completions)
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True).to(device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        total = torch.cat(scores)
        if not torch.isfinite(total).all():
            bad = total[~torch.isfinite(total)][0].item()
            count = int((~torch.isfinite(total)).sum())
            raise ValueError(
                f"the reward model returned {bad} for {count} completion(s); r_R must be finite "
                "(check its weights and dtype)"
            )
        return total, {"reward_model": total}
