"""The variant names, written once: the config, the CLI and the reproduction plans import them.

Scratch variants train a policy on a task (`rpg control train`): the four entropy treatments of
Table I on the basic task, and ``full`` (Soft PPO on r + r_R). Customization variants start from a
prior and train on the add-on reward r_R with the reward of eq. 8, r_R + ω'·log π_prior − α̂·log πθ
(`rpg control customize`). What each one sets is tabulated in ``rpg_control.config``.

Torch-free on purpose: the reproduction planner imports it without loading the training code.
"""

ENTROPY_VARIANTS = ("none", "end", "repeat", "soft")
SCRATCH_VARIANTS = ENTROPY_VARIANTS + ("full",)
CUSTOMIZATION_VARIANTS = ("greedy", "kl", "residual")
VARIANTS = SCRATCH_VARIANTS + CUSTOMIZATION_VARIANTS
