#!/bin/bash
# H1 diagnostic: Hopper Soft PPO at gamma 0.999 (stage 1 used 0.989), seeds 0 and 1, 3M steps,
# trained by the sweep's own code (commit b78b1b1) so that gamma is the only difference.
cd /work/sweep
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
for s in 0 1; do
  python -m rpg_control.cli train --env hopper --variant soft --seed $s --total-steps 3000000 \
    --set gamma=0.999 --run-dir /work/exp/hopper-soft-g0999-s$s --no-progress > /work/exp/g0999-s$s.log 2>&1 &
done
wait
for s in 0 1; do
  python -m rpg_control.cli eval /work/exp/hopper-soft-g0999-s$s/checkpoints/last.pt --episodes 100 --seed $((10000 + s)) \
    --output /work/exp/g0999-s$s-last.eval.json >> /work/exp/g0999-eval.log 2>&1
done
