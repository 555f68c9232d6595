#!/bin/bash
# Validation of the benchmark experiment's runs (EXPERIMENTS.md): closed loop on the 14 val
# episodes, open loop (all + hard) on the val split, with the floors and the ceiling.
#   experiments/benchmark/eval_val.sh RUNS_DIR BENCH_DATA OUT_DIR
# RUNS_DIR holds <variant>_s<seed>/best.pt (gpu_run.py); BENCH_DATA is `vlmad benchmark
# --make-data` output. Two processes at a time (2 cores).
set -euo pipefail
R=$1 D=$2 OUT=$3
mkdir -p "$OUT"
cl() { vlmad benchmark --split val --closed-loop-only --no-baselines --checkpoint "$R/$1/best.pt" \
         --name "$1" --json "$OUT/cl_val_$1.json" > "$OUT/cl_val_$1.log" 2>&1; }
ol() { vlmad benchmark --data "$D" --split val --open-loop-only --no-baselines \
         --checkpoint "$R/$1/best.pt" --name "$1" --json "$OUT/ol_val_$1.json" > "$OUT/ol_val_$1.log" 2>&1; }
cl baseline_s0 & cl vlmad_s0; wait
cl baseline_s1 & cl vlmad_s1; wait
vlmad benchmark --split val --closed-loop-only --checkpoint "$R/ego_mlp_s0/best.pt" --name ego_mlp_s0 \
  --json "$OUT/cl_val_baselines.json" > "$OUT/cl_val_baselines.log" 2>&1
for run in baseline_s0 baseline_s1 vlmad_s0 vlmad_s1; do ol $run; done
vlmad benchmark --data "$D" --split val --open-loop-only --checkpoint "$R/ego_mlp_s0/best.pt" \
  --name ego_mlp_s0 --json "$OUT/ol_val_floors.json" > "$OUT/ol_val_floors.log" 2>&1
