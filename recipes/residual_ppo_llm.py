"""Residual PPO on a causal LM (paper eq. 8): r_R + ω'·log π_ref − α̂·log πθ per token.

    accelerate launch recipes/residual_ppo_llm.py                      # embedded default: the toy world table
    accelerate launch recipes/residual_ppo_llm.py --config recipes/configs/residual_ppo_toy.yaml
    accelerate launch recipes/residual_ppo_llm.py --model_name_or_path <causal LM> \
        --dataset_name <prompts> --reward_model_path <reward model> --omega_prime 0.05 --alpha_hat 0.02

Same job as ``rpg ppo``; all flags are ResidualPPOConfig / ScriptArguments / ModelConfig /
ToyExperimentArguments fields (see ``--help``).
"""

import sys

from rpg_llm.ppo.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
