#!/bin/bash
# The test split, once, after choosing the shipped planner on val (EXPERIMENTS.md): open loop
# for every run and the floors; the action head against the teacher; closed loop (28 episodes)
# for the shipped planner, the floors, the ceiling and one seed of each variant.
#   experiments/benchmark/eval_test.sh RUNS_DIR BENCH_DATA OUT_DIR SHIPPED_RUN
set -euo pipefail
R=$1 D=$2 OUT=$3 SHIP=$4
mkdir -p "$OUT"
ol() { vlmad benchmark --data "$D" --split test --open-loop-only --no-baselines \
         --checkpoint "$R/$1/best.pt" --name "$1" --json "$OUT/ol_test_$1.json" > "$OUT/ol_test_$1.log" 2>&1; }
cl() { vlmad benchmark --split test --closed-loop-only --no-baselines --checkpoint "$R/$1/best.pt" \
         --name "$1" --json "$OUT/cl_test_$1.json" > "$OUT/cl_test_$1.log" 2>&1; }
for run in baseline_s0 baseline_s1 vlmad_s0 vlmad_s1; do ol $run; done
vlmad benchmark --data "$D" --split test --open-loop-only --checkpoint "$R/ego_mlp_s0/best.pt" \
  --name ego_mlp_s0 --json "$OUT/ol_test_floors.json" > "$OUT/ol_test_floors.log" 2>&1
vlmad eval --data "$D/test" --checkpoint "$R/vlmad_s0/best.pt" --json "$OUT/eval_test_vlmad_s0.json" \
  > "$OUT/eval_test_vlmad_s0.log" 2>&1
cl "$SHIP" & vlmad benchmark --split test --closed-loop-only --checkpoint "$R/ego_mlp_s0/best.pt" \
  --name ego_mlp_s0 --json "$OUT/cl_test_floors.json" > "$OUT/cl_test_floors.log" 2>&1; wait
for run in baseline_s0 baseline_s1 vlmad_s0 vlmad_s1; do
  [ "$run" = "$SHIP" ] || cl "$run"
done
