"""rpg_llm — the token-MDP side of Residual Policy Gradient (paper eq. 8: r_R + ω'·log π_prior − α̂·log πθ).

What a user imports (the library):

- :mod:`rpg_llm.ppo` — ``ResidualPPOTrainer`` / ``ResidualPPOConfig``: PPO on a causal LM, TRL's conventions;
- :mod:`rpg_llm.dpo` — ``DecoupledDPOTrainer`` / ``DecoupledDPOConfig``: decoupled DPO and the
  implicit-reward cross-entropy loss on TRL's ``DPOTrainer``;
- ``precision``, ``report``, ``cli_common``: shared by both trainers and their command lines.

What the embedded default builds (the experiments): :mod:`rpg_llm.toy` — a token world small enough to
compute the optimal policy exactly, and the PPO / DPO jobs that compare trainers against it.

The four public names below are loaded on first use, so ``import rpg_llm`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ["ResidualPPOTrainer", "ResidualPPOConfig", "DecoupledDPOTrainer", "DecoupledDPOConfig"]

_PUBLIC = {
    "ResidualPPOTrainer": "rpg_llm.ppo.trainer",
    "ResidualPPOConfig": "rpg_llm.ppo.config",
    "DecoupledDPOTrainer": "rpg_llm.dpo.trainer",
    "DecoupledDPOConfig": "rpg_llm.dpo.config",
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rpg_llm' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
