"""rpg_control — the MuJoCo side of Residual Policy Gradient: Soft PPO and its entropy variants,
customization of a prior (Greedy / KL / Residual PPO), add-on tasks, and the paper's Tables I–III."""
