"""rpg — the shared theory of Residual Policy Gradient (Wang et al.), as pure tensor functions.

    r_RPG = r_R + ω'·log π_prior − α̂·log πθ          (paper eq. 8)

* :mod:`rpg.reward`     — the reparameterized reward, its special cases, the entropy variants
* :mod:`rpg.preference` — DPO, decoupled DPO (eq. 25) and the implicit-reward CE loss (eq. 24)
* :mod:`rpg.advantage`  — GAE for env batches and padded token sequences; RLOO / GRPO group
                          baselines on sequence returns; masked whitening
* :mod:`rpg.ppo`        — PPO's clipped policy and value losses (eq. 6-7)
* :mod:`rpg.maxent`     — soft value iteration and the exact RPG target on finite MDPs

Depends on torch only; ``rpg_llm`` and ``rpg_control`` import it, never the other way round
(the ``rpg`` console command in :mod:`rpg.cli` loads them lazily, per subcommand).
"""

from rpg.advantage import (
    env_gae,
    generalized_advantage_estimation,
    group_normalized_advantages,
    leave_one_out_advantages,
    masked_gae,
    masked_mean,
    whiten,
)
from rpg.maxent import SoftSolution, rpg_target, soft_policy_evaluation, soft_value_iteration, state_distributions
from rpg.ppo import PolicyLossOutput, clipped_policy_loss, clipped_value_loss
from rpg.preference import PreferenceLossOutput, decoupled_dpo_loss, dpo_loss, implicit_reward_cross_entropy_loss
from rpg.reward import (
    EntropyRegularization,
    EntropyVariant,
    RewardCoefficients,
    entropy_regularization,
    residual_reward,
)

__version__ = "0.1.0"

__all__ = [
    "RewardCoefficients",
    "residual_reward",
    "EntropyVariant",
    "EntropyRegularization",
    "entropy_regularization",
    "PreferenceLossOutput",
    "dpo_loss",
    "decoupled_dpo_loss",
    "implicit_reward_cross_entropy_loss",
    "PolicyLossOutput",
    "clipped_policy_loss",
    "clipped_value_loss",
    "generalized_advantage_estimation",
    "env_gae",
    "masked_gae",
    "leave_one_out_advantages",
    "group_normalized_advantages",
    "masked_mean",
    "whiten",
    "SoftSolution",
    "soft_value_iteration",
    "rpg_target",
    "soft_policy_evaluation",
    "state_distributions",
]
