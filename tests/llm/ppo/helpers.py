"""What the PPO trainer tests share: a tiny config and a trainer on a toy world's saved model."""

from rpg_llm.ppo.config import ResidualPPOConfig
from rpg_llm.ppo.trainer import ResidualPPOTrainer

TINY_RUN = dict(
    omega_prime=0.3,
    alpha_hat=0.1,
    response_length=4,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    num_mini_batches=2,
    num_ppo_epochs=2,
    learning_rate=1e-2,
    max_steps=2,
    save_strategy="no",
    report_to=[],
    disable_tqdm=True,
    seed=11,
)


def tiny_config(tmp_path, **overrides) -> ResidualPPOConfig:
    """Two iterations of a few completions of 4 tokens, writing under ``tmp_path/out``."""
    return ResidualPPOConfig(**{"output_dir": str(tmp_path / "out"), **TINY_RUN, **overrides})


def toy_trainer(world, args, **kwargs) -> ResidualPPOTrainer:
    """The trainer on ``world``'s saved prior model (through ``from_pretrained``), its prompts and r_R."""
    kwargs.setdefault("train_dataset", world.prompt_dataset(repeats=3))
    kwargs.setdefault("reward_funcs", world.reward_functions())
    return ResidualPPOTrainer(args, str(world.prior_model_dir), processing_class=world.tokenizer, **kwargs)
