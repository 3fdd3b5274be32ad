"""Mixed precision from the device, never by hand.

TRL and transformers configs default to bf16 in places, which fails or crawls on CPU; whether bf16 is
right is a property of the device the job runs on, so both trainers' configs derive it here.
"""

from __future__ import annotations

import torch

__all__ = ["bf16_supported_on_device"]


def bf16_supported_on_device(use_cpu: bool = False) -> bool:
    """True when training would run on an accelerator that supports bf16; False on CPU."""
    if use_cpu:
        return False
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.xpu.is_bf16_supported()
    return False
