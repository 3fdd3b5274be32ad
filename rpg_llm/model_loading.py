"""Loading, preparing and saving the models of the LLM trainers the way TRL does it.

* **float32 master weights.** ``from_pretrained`` without a dtype keeps a checkpoint's own dtype, so a
  bf16 checkpoint would be trained by AdamW in bf16 (updates below bf16's resolution are lost).
  Every load here defaults to float32; mixed precision comes from autocast (``bf16`` / ``fp16``), as in TRL.
* **No dropout.** The −α̂·log πθ term of the reward (eq. 8) and PPO's old log-probs are the sampling
  law, which is the eval-mode forward; a train-mode forward with dropout would make the ratio ≠ 1
  before any step and add noise to the values. TRL disables dropout in policy, reference, value and
  reward model; so do we.
* **Frozen models under DeepSpeed / FSDP** (reference, reward model) go through TRL's
  ``prepare_deepspeed`` / ``prepare_fsdp`` (ZeRO-3 shards them too) instead of ``.to(device)``.
* **Saving** gathers the full state dict on every process (``accelerator.get_state_dict``) and
  writes it from the main one, so ZeRO-3 and FSDP save a complete, loadable model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = [
    "check_model_path",
    "float32_init_kwargs",
    "disable_dropout",
    "prepare_frozen_model",
    "split_state_dict",
]


def check_model_path(path, name: str) -> None:
    """Fail in one line on a model that is neither a local directory nor resolvable on the hub cache."""
    if os.path.isdir(path):
        # config.json: a transformers model; adapter_config.json: a PEFT adapter from_pretrained also loads
        if not any((Path(path) / marker).exists() for marker in ("config.json", "adapter_config.json")):
            raise ValueError(f"{name}={path!s} is a directory without config.json: not a transformers model")
        return
    if str(path).startswith(("/", "./", "../", "~", ".\\")) or os.path.isfile(path):
        # Clearly a local path: say so at once instead of asking the hub about it.
        raise ValueError(f"{name}={path!s}: no such model directory")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as error:  # OSError / ValueError / HF errors: one line, not a traceback
        raise ValueError(
            f"{name}={path!s}: cannot load a model config ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from None


def float32_init_kwargs(init: dict | None) -> dict:
    """``from_pretrained`` kwargs with ``dtype`` defaulting to float32 (an explicit dtype, "auto" included, wins)."""
    init = dict(init or {})
    if init.get("dtype") is None and init.get("torch_dtype") is None:
        init.pop("torch_dtype", None)
        init["dtype"] = torch.float32
    return init


def disable_dropout(*models) -> None:
    """Set p = 0 in every ``nn.Dropout`` of each model (TRL's ``disable_dropout_in_model``), and in the
    configs' dropout fields too, so a model saved from here reloads without dropout."""
    from trl.trainer.utils import disable_dropout_in_model

    for model in models:
        if model is None:
            continue
        disable_dropout_in_model(model)
        config = getattr(model, "config", None)
        if config is not None:
            for key, value in list(vars(config).items()):
                if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
                    setattr(config, key, 0.0)


def prepare_frozen_model(model, accelerator):
    """A model that is only evaluated (reference, reward model), placed as TRL places it.

    DeepSpeed: ``prepare_deepspeed`` (sharded under ZeRO-3, a stage-0 replica otherwise); FSDP:
    ``prepare_fsdp``; anything else: ``.to(device)``. The model is frozen and in eval mode.
    """
    from accelerate.utils import DistributedType

    model.requires_grad_(False).eval()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        from trl.models.utils import prepare_deepspeed

        return prepare_deepspeed(model, accelerator)
    if accelerator.distributed_type == DistributedType.FSDP:
        from trl.models.utils import prepare_fsdp

        return prepare_fsdp(model, accelerator).eval()
    return model.to(accelerator.device)


def split_state_dict(state_dict: dict, prefix: str) -> dict:
    """The entries of ``state_dict`` under ``prefix.`` with the prefix removed."""
    start = prefix + "."
    return {key[len(start) :]: value for key, value in state_dict.items() if key.startswith(start)}
