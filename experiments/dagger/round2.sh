#!/usr/bin/env bash
# DAgger round 2 (EXPERIMENTS.md, "Round 8"), on the CPU: the learner is the ego-dropout planner
# shipped in round 7 (default.pt), whose closed-loop failures are early, tight turns and lanes
# it never returns to; the expert takes over from those states and its way back is the label.
# Usage: experiments/dagger/round2.sh BENCH WORK INIT RUN SEED [VLM-AD FLAGS]
#   BENCH: `vlmad benchmark --make-data` output (train/ annotated, val/, cache/);
#   WORK: where the round's bags go; INIT: the fine-tunes' starting point (round 3's DAgger
#   driver, as every run of rounds 5-8); RUN: the run folder's name under WORK (one per
#   seed and arm: a rerun of the same RUN continues it); the rest goes to `vlmad train`
#   (e.g. `--text-cache BENCH/text_cache` for VLM-AD, `--no-vlm-ad` for the baseline).
# 1. the learner drives windows of 200 new scenes (seed 3: a stream no split uses), 7 min;
# 2. the rule teacher annotates them as sidecars (2 min);
# 3. round 7's recipe (ego dropout 0.3) on train + those scenes (22 min on 2 cores).
# Every step resumes where a killed run stopped (rerun the same command).
set -euo pipefail
BENCH=${1:?BENCH}; WORK=${2:?WORK}; INIT=${3:?INIT}; RUN=${4:?RUN}; SEED=${5:?SEED}; shift 5
HERE=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$WORK"
[ -f "$WORK/driver2.pt" ] || cp "$HERE/vlmad_ros/checkpoints/default.pt" "$WORK/driver2.pt"
vlmad synth --scenes 200 --seed 3 --duration 20 --width 800 \
  --height 450 --odom-hz 20 --keyframe-images-only --dagger "$WORK/driver2.pt" --workers 2 \
  --out "$WORK/round2" --quiet
vlmad annotate "$WORK/round2" --out "$WORK/round2_ann" --teacher rule --no-progress \
  --summary-json "$WORK/round2_ann.json"
vlmad train --data "$BENCH/train" "$WORK/round2_ann" --val-data "$BENCH/val" --init "$INIT" \
  --config "$HERE/experiments/lights/finetune_lift_egodrop.yaml" --seed "$SEED" "$@" \
  --cache-dir "$BENCH/cache" --out "$WORK/$RUN"
