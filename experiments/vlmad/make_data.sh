#!/usr/bin/env bash
# Data for the VLM-AD experiment (EXPERIMENTS.md). Run from the repo root after `. ./env.sh`.
set -euo pipefail
D=runs/vlmad_exp/data
nice vlmad synth --scenes 24 --seed 1 --duration 20 --width 192 --height 108 --out $D/train_raw --workers 2 --quiet
nice vlmad annotate $D/train_raw --out $D/train --teacher rule --no-progress --summary-json $D/train_annotate.json
nice vlmad synth --scenes 4 --seed 500 --duration 20 --width 192 --height 108 --out $D/val --workers 2 --quiet
nice vlmad synth --scenes 10 --seed 1000 --duration 20 --width 192 --height 108 --out $D/test --workers 2 --quiet
echo DATA_DONE
