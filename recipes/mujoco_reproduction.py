"""Reproduce the paper's MuJoCo Tables I-III (same options as `rpg control reproduce`).

    python recipes/mujoco_reproduction.py --table 2 --envs halfcheetah --scale quick --jobs 1
    python recipes/mujoco_reproduction.py --table 1 --jobs 16 --backend ray --ray-address auto

Plans the table's runs, runs the missing ones, writes results/mujoco/<scale>/table<N>.md and plots.
Rerun the same command after a kill: finished runs are skipped, unfinished ones resume.
"""

import sys

from rpg_control.reproduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
