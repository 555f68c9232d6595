#!/bin/bash
# Open loop on the validation split for the runs of the second GPU round (EXPERIMENTS.md).
#   experiments/benchmark/eval_round2_val.sh RUNS_DIR BENCH_DATA OUT_DIR
set -euo pipefail
R=$1 D=$2 OUT=$3
mkdir -p "$OUT"
for run in baseline_s2 vlmad_s2 ego_mlp_s2 q1_s0 q2_s0 baseline_norecovery_s0; do
  vlmad benchmark --data "$D" --split val --open-loop-only --no-baselines --cache-dir "$D/cache" \
    --checkpoint "$R/$run/best.pt" --name "$run" --json "$OUT/ol_val_$run.json" > "$OUT/ol_val_$run.log" 2>&1
done
