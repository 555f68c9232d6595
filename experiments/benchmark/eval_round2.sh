#!/bin/bash
# The second GPU round (third seeds, Q1-only, Q2-only, no recovery data; EXPERIMENTS.md):
# open loop on the test split for every run, closed loop on test for those the GPU machine's
# budget did not finish (gpu_run.py --closed-loop ran out of device time on test).
#   experiments/benchmark/eval_round2.sh RUNS_DIR BENCH_DATA OUT_DIR
set -euo pipefail
R=$1 D=$2 OUT=$3
mkdir -p "$OUT"
RUNS="baseline_s2 vlmad_s2 ego_mlp_s2 q1_s0 q2_s0 baseline_norecovery_s0"
for run in $RUNS; do
  vlmad benchmark --data "$D" --split test --open-loop-only --no-baselines --cache-dir "$D/cache" \
    --checkpoint "$R/$run/best.pt" --name "$run" --json "$OUT/ol_test_$run.json" > "$OUT/ol_test_$run.log" 2>&1
done
for run in $RUNS; do
  [ -f "$OUT/cl_test_$run.json" ] || \
    vlmad benchmark --split test --closed-loop-only --no-baselines --checkpoint "$R/$run/best.pt" \
      --name "$run" --json "$OUT/cl_test_$run.json" > "$OUT/cl_test_$run.log" 2>&1
done
