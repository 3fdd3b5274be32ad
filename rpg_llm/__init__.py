"""rpg_llm — the token-MDP side of Residual Policy Gradient: PPO for causal LMs, decoupled DPO, and
the toy token world with exact targets. Builds on transformers / TRL / peft / accelerate."""
