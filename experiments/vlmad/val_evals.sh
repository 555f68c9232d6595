#!/usr/bin/env bash
# Per-scenario breakdown on the validation scenes (they hold the red-light and pedestrian scenes).
set -euo pipefail
for v in baseline vlmad; do for s in 0 1 2; do
  nice -n 19 vlmad eval --data runs/vlmad_exp/data/val --checkpoint runs/vlmad_exp/runs/$v/s$s/train/best.pt --json runs/vlmad_exp/runs/$v/s$s/val.json --name "$v s$s" > runs/vlmad_exp/runs/$v/s$s/val_eval.log 2>&1
done; done
echo VAL_DONE
