#!/usr/bin/env bash
# More lane changes around stalled cars (EXPERIMENTS.md, "Round 10"), on the CPU. Round 9's
# planner scores 38 on the test split's stopped_vehicle episodes (the expert ceiling too). On
# val2's stopped_vehicle:8501 (experiments/closed_loop/plan_vs_expert.py --ticks) the expert
# plans the lane change from about 30 m behind the stalled car; the planner keeps its lane
# for 3.4 s more, moves over when it is a few metres away, and touches it. Here 100 more
# stopped_vehicle scenes (seed 9, a stream no split uses; 12 s: the approach and the lane
# change) are added to round 9's recipe (train + DAgger round 2 + wide knocks, VLM-AD).
# Usage: experiments/stalled/stalled_cars.sh BENCH DAGGER WIDE WORK INIT RUN SEED [TRAIN FLAGS]
#   BENCH: `vlmad benchmark --make-data` output; DAGGER: experiments/dagger/round2.sh's WORK;
#   WIDE: experiments/recovery/wide_knocks.sh's WORK (wide_ann/ annotated); WORK: where the
#   new scenes and the run go; INIT: round 3's DAgger driver; the rest goes to `vlmad train`.
# Every step resumes where a killed run stopped (rerun the same command).
set -euo pipefail
BENCH=${1:?BENCH}; DAGGER=${2:?DAGGER}; WIDE=${3:?WIDE}; WORK=${4:?WORK}; INIT=${5:?INIT}
RUN=${6:?RUN}; SEED=${7:?SEED}; shift 7
HERE=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$WORK"
vlmad synth --scenes 100 --seed 9 --duration 12 --scenario stopped_vehicle --width 800 \
  --height 450 --odom-hz 20 --keyframe-images-only --workers 2 --out "$WORK/stalled" --quiet
vlmad annotate "$WORK/stalled" --out "$WORK/stalled_ann" --teacher rule --no-progress \
  --summary-json "$WORK/stalled_ann.json"
vlmad train --data "$BENCH/train" "$DAGGER/round2_ann" "$WIDE/wide_ann" "$WORK/stalled_ann" \
  --val-data "$BENCH/val" --init "$INIT" \
  --config "$HERE/experiments/lights/finetune_lift_egodrop.yaml" --seed "$SEED" \
  "$@" --cache-dir "$BENCH/cache" --out "$WORK/$RUN"
