"""Reproduce the paper's MuJoCo Tables I-III (same options as `rpg control reproduce`).

    python recipes/mujoco_reproduction.py --table 2 --envs halfcheetah --scale quick --jobs 1
    python recipes/mujoco_reproduction.py --table 1 --jobs 16 --backend ray --ray-address auto
    # issue #11, the paper-scale sweep (results under results/mujoco/paper/):
    python recipes/mujoco_reproduction.py --table 2 --envs halfcheetah --scale paper --jobs 2 --no-progress
    python recipes/mujoco_reproduction.py --table 1 --variants soft --envs hopper ant --scale paper --jobs 2

Plans the table's runs, runs the missing ones, writes results/mujoco/<scale>/table<N>.md and plots.
Rerun the same command after a kill: finished runs are skipped, unfinished ones resume. See
docs/mujoco_reproduction.md (what each run records, Ray, how verdicts are decided).
"""

import sys

from rpg_control.reproduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
