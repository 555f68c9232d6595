#!/usr/bin/env bash
# Closed loop on the validation episodes for the DAgger comparison (EXPERIMENTS.md, "DAgger"):
# the train-only fine-tune and the train + DAgger fine-tune, side by side, one process each
# (2 cores). Usage: experiments/dagger/eval_val.sh SPLIT OUT CKPT_TRAIN_ONLY CKPT_DAGGER
# (SPLIT: val or val2; the test split runs only after the choice, eval_test.sh).
set -euo pipefail
SPLIT=${1:?val or val2}; OUT=${2:?OUT}; TRAIN_ONLY=${3:?ckpt}; DAGGER=${4:?ckpt}
mkdir -p "$OUT"
run() {   # name checkpoint
  vlmad benchmark --split "$SPLIT" --closed-loop-only --no-baselines --checkpoint "$2" \
    --name "$1" --json "$OUT/cl_${SPLIT}_$1.json" > "$OUT/cl_${SPLIT}_$1.log" 2>&1
}
run ft_train_only "$TRAIN_ONLY" &
run ft_dagger1 "$DAGGER" &
wait
