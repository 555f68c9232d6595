#!/usr/bin/env bash
# Issue 12's GPU measurements in one run on a GPU machine with torch + torchvision (no ROS 2
# needed: everything here runs from the source tree). About 6 minutes on an H200.
#
#   experiments/gpu_check_issue12.sh OUT [WHEELS]
#
# WHEELS: a folder of wheels for what the machine lacks (simplejpeg, rosbags and its needs:
# apsw, backports.zstd, lz4, ruamel.yaml), installed with --no-index into /tmp/site; fetched
# where pip works, for the GPU machine's Python (3.12 on the one this was run on):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d WHEELS \
#       simplejpeg==1.9.0 rosbags==0.11.9 apsw==3.54.1.0 backports.zstd==1.8.0 lz4==4.4.5 \
#       ruamel.yaml==0.19.1
# 1. test/test_gpu_decode.py, test_backbone.py and test_planner_core.py on the GPU (the nvJPEG
#    and CUDA-graph checks skip on a CPU and run there);
# 2. experiments/gpu_check_backbone.py: torchvision's ResNet-18/50 weights in our ResNet, and
#    the TensorRT fp16 engine where the tensorrt package imports;
# 3. `vlmad bench planner-step` on CUDA: the packaged planner and the two nuScenes presets,
#    CPU vs nvJPEG decoding, fp32 / fp16, and the presets replayed as CUDA graphs;
# 4. `vlmad bench loader --train-device $DEVICE` at both presets: the cache's DataLoader on every
#    core against the GPU's training samples/s, in one run.
# Results: OUT/log.txt and OUT/results.tar (every JSON and log). DEVICE=cpu runs the same
# steps on a CPU (a dry run: the GPU parts skip or fail, and training is slow).
set -u
OUT=${1:?usage: gpu_check_issue12.sh OUT [WHEELS]}
WHEELS=${2:-}
DEVICE=${DEVICE:-cuda}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
W=$(mktemp -d /tmp/gpu_check.XXXX)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -n "$WHEELS" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
    torch.cuda.is_available() and torch.cuda.get_device_name())'
python3 -c 'import torchvision; print("torchvision", torchvision.__version__)'
echo "cpus $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"

run() {   # run NAME LIMIT_S CMD...: output to W/NAME.log, exit status to the log
    local name=$1 limit=$2
    shift 2
    echo "== $(date +%T) $name: $*"
    timeout -k 10 "$limit" "$@" > "$W/$name.log" 2>&1
    echo "== $(date +%T) $name: exit $?"
    tail -n 25 "$W/$name.log"
    tar -C "$W" --exclude=backbone -cf "$OUT/results.tar" .     # what is done comes back
}
VLMAD="python3 -m vlmad_ros.cli"
R18=experiments/presets/nuscenes_resnet18_704x256.yaml
R34=experiments/presets/nuscenes_resnet34_800x448.yaml

# The issue's goals first (node step latency, training vs loader), then the checks.
run step_r18 150 $VLMAD bench planner-step --device $DEVICE --config $R18 --repeats 200 \
    --cuda-graphs --json "$W/step_r18.json"
run loader_r18 100 $VLMAD bench loader --config $R18 --train-device $DEVICE --batch-size 32 \
    --train-steps 20 --repeats 3 --seconds 20 --json "$W/loader_r18.json"
run tests 150 python3 -m pytest -q -p no:cacheprovider -o addopts= test/test_gpu_decode.py \
    test/test_backbone.py test/test_planner_core.py
if [ -z "${SKIP_BACKBONE:-}" ]; then
    run backbone 90 python3 experiments/gpu_check_backbone.py --out "$W/backbone"
    cp "$W/backbone/gpu_check_backbone.json" "$W/" 2>/dev/null
fi
run step_r34 150 $VLMAD bench planner-step --device $DEVICE --config $R34 --repeats 200 \
    --cuda-graphs --json "$W/step_r34.json"
run loader_r34 100 $VLMAD bench loader --config $R34 --train-device $DEVICE --batch-size 32 \
    --train-steps 20 --repeats 3 --seconds 20 --json "$W/loader_r34.json"
run step_default 60 $VLMAD bench planner-step --device $DEVICE --repeats 200 \
    --json "$W/step_default.json"
echo "== $(date +%T) done: $(ls "$W" | tr '\n' ' ')"
