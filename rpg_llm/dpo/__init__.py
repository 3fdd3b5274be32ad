"""Decoupled DPO (and DPO / the implicit-reward CE loss) on TRL's DPOTrainer: trainer, config, the CLI."""
