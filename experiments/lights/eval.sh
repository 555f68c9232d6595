#!/usr/bin/env bash
# Round 4 of EXPERIMENTS.md: one fine-tuned planner on the validation sets, as round 3 measured
# the shipped planner, the train-only fine-tune and DAgger (experiments/dagger/eval_val2.sh):
# val open loop (all and hard L2), the closed-loop set val2 (28 episodes) and val closed loop
# (14 episodes). Closed loop runs in lockstep: its numbers do not depend on the machine's load
# (its wall time does: 140 s for val2 alone on 2 cores, 766 s beside a training).
# Usage: experiments/lights/eval.sh OUT NAME CHECKPOINT BENCH
set -euo pipefail
OUT=${1:?OUT}; NAME=${2:?NAME}; CKPT=${3:?CHECKPOINT}; BENCH=${4:?BENCH}
mkdir -p "$OUT"
vlmad benchmark --data "$BENCH" --split val --open-loop-only --no-baselines --checkpoint "$CKPT" \
  --cache-dir "$BENCH/cache" \
  --name "$NAME" --json "$OUT/ol_val_$NAME.json" > "$OUT/ol_val_$NAME.log" 2>&1
vlmad benchmark --split val2 --closed-loop-only --no-baselines --checkpoint "$CKPT" \
  --name "$NAME" --json "$OUT/cl_val2_$NAME.json" > "$OUT/cl_val2_$NAME.log" 2>&1
vlmad benchmark --split val --closed-loop-only --no-baselines --checkpoint "$CKPT" \
  --name "$NAME" --json "$OUT/cl_val_$NAME.json" > "$OUT/cl_val_$NAME.log" 2>&1
