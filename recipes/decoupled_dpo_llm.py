"""Decoupled DPO (paper eq. 25) and the implicit-reward CE loss (eq. 24) on TRL's DPOTrainer.

    python recipes/decoupled_dpo_llm.py                 # embedded default: DPO vs decoupled DPO vs CE on the toy world
    python recipes/decoupled_dpo_llm.py --config recipes/configs/decoupled_dpo_llm.yaml
    accelerate launch recipes/decoupled_dpo_llm.py --model_name_or_path <causal LM> \
        --dataset_name <preference dataset> --loss decoupled --alpha_hat 0.1 --omega_prime 0.2

Same job as ``rpg dpo``; every flag is a DecoupledDPOConfig / ScriptArguments / ModelConfig /
ToyDPOArguments field (see ``--help``).
"""

import sys

from rpg_llm.dpo.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
