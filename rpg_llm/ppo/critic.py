"""The critic of PPO for causal LMs: a transformer backbone with a scalar value head.

``values[:, t]`` estimates the return-to-go of the per-token RPG reward (eq. 8) from the state
"prompt + completion tokens before t". The backbone is a separate copy of the policy's (or
``value_model_path``'s) trunk, as in TRL's PPO: policy gradients and value regression do not fight
over one set of weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

__all__ = ["CausalLMCritic", "PolicyAndCritic"]


class CausalLMCritic(nn.Module):
    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        # Start at V ≡ 0: no arbitrary baseline before the first regression step.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_causal_lm(cls, model) -> "CausalLMCritic":
        """A critic whose trunk is a copy of ``model``'s transformer (``model.base_model``)."""
        return cls(copy.deepcopy(model.base_model), model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "CausalLMCritic":
        """Trunk from any checkpoint ``AutoModel`` can load; a saved critic also restores its head.

        A sequence-classification checkpoint with one label (a reward model: TRL's usual value-model
        setup) gives both its trunk and its ``score`` head, so V starts as the reward model's r_R.
        """
        from transformers import AutoConfig, AutoModel

        config_kwargs = {key: kwargs[key] for key in ("revision", "trust_remote_code", "token") if key in kwargs}
        architectures = AutoConfig.from_pretrained(path, **config_kwargs).architectures or []
        if any(name.endswith("ForSequenceClassification") for name in architectures):
            return cls._from_sequence_classifier(path, **kwargs)
        backbone = AutoModel.from_pretrained(path, **kwargs)
        critic = cls(backbone, backbone.config.hidden_size)
        head = Path(path) / "value_head.pt"
        if head.exists():
            critic.value_head.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
        return critic

    @classmethod
    def _from_sequence_classifier(cls, path, **kwargs) -> "CausalLMCritic":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
        head = getattr(model, "score", None)
        if not isinstance(head, nn.Linear) or head.out_features != 1:
            raise ValueError(f"value_model_path={path!s}: a sequence classifier without a one-output `score` head")
        critic = cls(getattr(model, model.base_model_prefix), model.config.hidden_size)
        with torch.no_grad():
            critic.value_head.weight.copy_(head.weight.to(critic.value_head.weight.dtype))
            if head.bias is not None:
                critic.value_head.bias.copy_(head.bias.to(critic.value_head.bias.dtype))
        return critic

    def save_pretrained(self, path: str | Path, state_dict: dict | None = None) -> None:
        """Trunk (``save_pretrained``) and ``value_head.pt``; ``state_dict``: a gathered full state (ZeRO-3 / FSDP)."""
        from rpg_llm.model_loading import split_state_dict

        path = Path(path)
        state_dict = state_dict if state_dict is not None else self.state_dict()
        self.backbone.save_pretrained(path, state_dict=split_state_dict(state_dict, "backbone"))
        head = {key: value.detach().cpu() for key, value in split_state_dict(state_dict, "value_head").items()}
        torch.save(head, path / "value_head.pt")

    def forward(self, input_ids, attention_mask=None, position_ids=None) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        return self.value_head(hidden).squeeze(-1).float()


class PolicyAndCritic(nn.Module):
    """Policy and critic in one module, so one optimizer, one DDP wrapper and one checkpoint hold both.

    ``critic=None`` for the critic-free estimators (RLOO, GRPO): the module then holds the policy only
    and ``forward`` returns ``values=None``.
    """

    def __init__(self, policy: nn.Module, critic: CausalLMCritic | None) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic

    # Gradient checkpointing of both trunks (TRL's unwrap_model_for_generation turns it off while sampling).
    @property
    def is_gradient_checkpointing(self) -> bool:
        policy = self.policy
        flag = getattr(policy, "is_activation_checkpointing", None)
        return bool(flag if flag is not None else getattr(policy, "is_gradient_checkpointing", False))

    def _trunks(self) -> tuple[nn.Module, ...]:
        return (self.policy,) if self.critic is None else (self.policy, self.critic.backbone)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        for module in self._trunks():
            # transformers ≥ 5.2x renamed it activation checkpointing; keep working on both.
            enable = getattr(module, "activation_checkpointing_enable", None) or module.gradient_checkpointing_enable
            enable(gradient_checkpointing_kwargs)
        if hasattr(self.policy, "enable_input_require_grads"):
            self.policy.enable_input_require_grads()  # LoRA: frozen embeddings still need a grad path

    def gradient_checkpointing_disable(self) -> None:
        for module in self._trunks():
            disable = getattr(module, "activation_checkpointing_disable", None) or module.gradient_checkpointing_disable
            disable()

    def forward(self, input_ids, attention_mask, position_ids, response_length: int):
        """Logits and values at the ``response_length`` states that emit the completion tokens.

        Sequences are [left-padded prompt | right-padded completion], so those states are the
        positions −(L+1) … −2; only they go through the LM head (``logits_to_keep``).
        """
        keep = response_length + 1
        logits = self.policy(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=keep
        ).logits[:, :-1]
        values = None if self.critic is None else self.critic(input_ids, attention_mask, position_ids)[:, -keep:-1]
        return logits, values
