"""The paper's published MuJoCo numbers (Wang et al., Residual Policy Gradient, Tables I-III).

Each figure is (mean, std) over 500 evaluation episodes (100 per seed, 5 seeds, 5M env steps).
Table I/III report the basic reward; Table II reports total = basic + add-on, the basic reward,
the add-on metric (mean |θ_bthigh|, torso height z, lateral velocity v_y) and the add-on reward.
"""

from __future__ import annotations

ENVS = ("halfcheetah", "hopper", "ant")
ENV_TITLES = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "ant": "Ant"}

# Table I rows/columns. "average" = the final policies, "best" = the best-performing checkpoints.
TABLE1_VARIANTS = ("none", "end", "repeat", "soft")
TABLE1_TITLES = {"none": "No-Entropy PPO", "end": "End-Entropy PPO", "repeat": "Repeat-Entropy PPO", "soft": "Soft PPO"}
TABLE1 = {
    "average": {
        "ant": {"none": (3918.9, 1032.9), "end": (3887.9, 991.4), "repeat": (3241.2, 1299.7), "soft": (3845.6, 911.7)},
        "hopper": {
            "none": (2387.3, 1060.6),
            "end": (2696.3, 978.0),
            "repeat": (2611.6, 967.8),
            "soft": (3105.3, 829.5),
        },
        "halfcheetah": {
            "none": (2254.9, 1188.7),
            "end": (3291.5, 2006.0),
            "repeat": (-114.9, 73.2),
            "soft": (4993.7, 1262.3),
        },
    },
    "best": {
        "ant": {"none": (4389.6, 296.7), "end": (4223.4, 822.6), "repeat": (4023.9, 786.3), "soft": (4581.1, 540.3)},
        "hopper": {"none": (3271.2, 573.4), "end": (3654.4, 46.4), "repeat": (3404.2, 226.0), "soft": (3689.4, 29.2)},
        "halfcheetah": {
            "none": (4136.6, 1566.6),
            "end": (6049.3, 946.2),
            "repeat": (-38.9, 58.2),
            "soft": (5896.5, 371.8),
        },
    },
}

# Table II: policy -> (total, basic, add-on metric, add-on reward).
TABLE2_POLICIES = ("prior", "greedy", "kl", "residual", "full")
TABLE2_TITLES = {
    "prior": "Prior Policy",
    "greedy": "Greedy PPO",
    "kl": "KL PPO",
    "residual": "Residual PPO",
    "full": "Full Policy",
}
ADDON_METRIC_TITLES = {"halfcheetah": "mean |θ_bthigh|", "hopper": "mean z", "ant": "mean v_y"}
TABLE2 = {
    "halfcheetah": {
        "prior": ((5357.0, 377.8), (5896.5, 371.8), (0.54, 0.01), (-539.8, 8.7)),
        "greedy": ((-1314.0, 252.4), (-1150.2, 236.0), (0.16, 0.02), (-163.7, 21.8)),
        "kl": ((5418.7, 150.1), (5776.3, 133.7), (0.36, 0.02), (-357.6, 17.7)),
        "residual": ((5488.3, 75.6), (5845.1, 69.5), (0.36, 0.01), (-356.3, 8.6)),
        "full": ((5556.2, 57.8), (6011.4, 57.2), (0.46, 0.01), (-455.2, 5.8)),
    },
    "hopper": {
        "prior": ((5133.7, 33.2), (3689.4, 29.2), (1.44, 0.01), (1444.3, 6.0)),
        "greedy": ((3714.5, 7.1), (2224.2, 6.5), (1.49, 0.00), (1490.2, 0.9)),
        "kl": ((3864.4, 50.10), (2400.3, 55.2), (1.46, 0.01), (1464.1, 6.1)),
        "residual": ((4401.4, 505.3), (2951.6, 333.5), (1.50, 0.03), (1449.5, 177.0)),
        "full": ((5142.7, 34.8), (3669.0, 26.8), (1.47, 0.00), (1473.6, 8.4)),
    },
    "ant": {
        "prior": ((4875.2, 589.4), (4581.1, 540.3), (0.29, 0.13), (294.1, 133.9)),
        "greedy": ((4340.6, 1464.5), (726.4, 277.1), (3.86, 0.96), (3613.9, 1246.4)),
        "kl": ((4019.4, 1103.4), (368.6, 151.8), (3.74, 0.92), (3650.6, 1047.6)),
        "residual": ((5568.3, 852.4), (1340.8, 220.0), (4.27, 0.63), (4227.4, 705.3)),
        "full": ((6185.1, 1142.0), (3543.0, 621.2), (2.70, 0.41), (2641.6, 542.8)),
    },
}

# Table III: Soft PPO with a global (state-independent) std vs a state-dependent std.
TABLE3_STDS = ("global", "state")
TABLE3_TITLES = {"global": "Global Std.", "state": "State Std."}
TABLE3 = {
    "average": {
        "ant": {"global": (3845.6, 911.7), "state": (3055.3, 1231.5)},
        "hopper": {"global": (3105.3, 829.5), "state": (1504.0, 948.3)},
        "halfcheetah": {"global": (4993.7, 1262.3), "state": (2621.7, 1605.3)},
    },
    "best": {
        "ant": {"global": (4581.1, 540.3), "state": (3915.1, 599.9)},
        "hopper": {"global": (3689.4, 29.2), "state": (2511.6, 784.6)},
        "halfcheetah": {"global": (5896.5, 371.8), "state": (5405.0, 1288.8)},
    },
}

PAPER_PROTOCOL = "5M env steps per run, 5 seeds, 500 evaluation episodes (100 per seed)"
