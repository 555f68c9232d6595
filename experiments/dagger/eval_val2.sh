#!/usr/bin/env bash
# The fresh closed-loop validation set (val2, 28 episodes) for the shipped planner, the
# train-only fine-tune and the DAgger fine-tune (EXPERIMENTS.md, "DAgger"), three processes.
# Usage: experiments/dagger/eval_val2.sh OUT SHIPPED TRAIN_ONLY DAGGER
set -euo pipefail
OUT=${1:?OUT}; mkdir -p "$OUT"
run() {   # name checkpoint
  vlmad benchmark --split val2 --closed-loop-only --no-baselines --checkpoint "$2" \
    --name "$1" --json "$OUT/cl_val2_$1.json" > "$OUT/cl_val2_$1.log" 2>&1
}
run shipped "${2:?}" &
run ft_train_only "${3:?}" &
run ft_dagger1 "${4:?}" &
wait
