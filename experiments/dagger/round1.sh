#!/usr/bin/env bash
# DAgger round 1 on the synthetic benchmark (EXPERIMENTS.md, "DAgger"), on the CPU.
# Usage: experiments/dagger/round1.sh BENCH WORK   (BENCH: `vlmad benchmark --make-data` output
# with train/ (400 annotated scenes) and val/; WORK: where the DAgger bags and runs go).
# 1. the shipped planner (baseline seed 1 = default.pt) drives windows of 300 new scenes
#    (seed 2: a stream no split uses), the expert takes over and is recorded;
# 2. fine-tune default.pt on train + those scenes, the recipe of the train-only fine-tune
#    (experiments/benchmark/finetune.yaml, --no-vlm-ad, seed 0), so the comparison is
#    "the same 10 CPU epochs, with and without the DAgger scenes".
set -euo pipefail
BENCH=${1:?BENCH}; WORK=${2:?WORK}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
DEFAULT=$HERE/vlmad_ros/checkpoints/default.pt
mkdir -p "$WORK"
[ -f "$WORK/driver.pt" ] || cp "$DEFAULT" "$WORK/driver.pt"
vlmad synth --scenes 300 --seed 2 --duration 20 --width 800 --height 450 --odom-hz 20 \
  --keyframe-images-only --dagger "$WORK/driver.pt" --workers 2 --out "$WORK/round1" --quiet
vlmad train --data "$BENCH/train" "$WORK/round1" --val-data "$BENCH/val" \
  --init "$WORK/driver.pt" --config "$HERE/experiments/benchmark/finetune.yaml" --no-vlm-ad \
  --seed 0 --cache-dir "$BENCH/cache" --out "$WORK/ft_dagger1"
