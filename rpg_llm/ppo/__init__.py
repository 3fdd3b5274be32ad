"""Residual PPO for causal LMs: the trainer, its config, the critic, sampling, reward sources, the CLI."""
