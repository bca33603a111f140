#!/usr/bin/env bash
# The one prepared GPU script: every figure docs/benchmarks.md wants from a GPU, in one short run
# for a lent GPU machine (its budget is minutes: the parts' timeouts add up to 7.5 minutes).
#
#   bash bench/gpu.sh            # on the GPU machine: figures printed and kept under $OUT
#   bash bench/gpu.sh --smoke    # every part with tiny sizes on the CPU (tests/test_bench.py)
#
# Without a GPU (and without --smoke) it says so and exits 0. On a bare machine (Python and torch
# only) it first installs the wheels carried in gpu-wheels/ (bench/gpu_wheels.sh downloads them:
# MLflow's tracking client, psutil and nvidia-ml-py); MLflow then writes to a file store.
#
# $OUT (default /tmp/bench-gpu) receives summary.txt (everything printed), step_cost_b100.json,
# step_cost_b512.json, epoch.json and gpu_util.csv (nvidia-smi every second): five files.
#
# Parts (add one as a `part` line at the end; each gets a timeout and never stops the others):
# - step_cost: every method's eager step, fp32 and bf16, at batch 100 and 512: ms per step, peak
#   memory, each against vanilla (CIFAR ResNet-18, 32 px, 100 classes)
# - epoch: the engine's epoch on 50,000 CIFAR-size images for vanilla and AdAutoMix, fp32 and
#   bf16: setup, training, the epoch's evaluation + MLflow + checkpoint, the 10,000-image test
#   split (both networks, and one network alone), GPU utilisation from MLflow's system metrics
# - distributed (issue 18): one GPU with and without the distributed code path
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-/tmp/bench-gpu}
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1

if [ "$SMOKE" = 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: no GPU here (nvidia-smi finds none); nothing measured." \
         "bash bench/gpu.sh --smoke runs every part with tiny sizes on the CPU."
    exit 0
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/summary.txt") 2>&1

FAILED=()
part() {   # part NAME TIMEOUT COMMAND...: run it, print its output, never stop the other parts
    local name=$1 limit=$2
    shift 2
    [ "$SMOKE" = 1 ] && limit=600   # a shared CPU machine: what counts is that each part ends
    echo "== $name: $*"
    local started=$SECONDS
    if ! timeout "$limit" "$@"; then
        echo "!! $name failed or timed out"
        FAILED+=("$name")
    fi
    echo "== $name: $((SECONDS - started)) s"
}

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu
    STEP=(--methods vanilla,mixup --width 4 --image-size 16 --num-classes 4 --repeats 1
          --steps 1 --memory-steps 0 --threads 1)
    BATCHES=(4)
    EPOCH=(--tiny --methods vanilla --precision bf16)
    DISTRIBUTED=(--methods vanilla --width 4 --batch-size 4 --image-size 16 --num-classes 4
                 --steps 1 --warmup 0 --repeats 1 --threads 1)
else
    DEVICE=cuda
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
        > "$OUT/gpu_util.csv" 2>/dev/null &
    SAMPLER=$!
    trap 'kill $SAMPLER 2>/dev/null' EXIT
    if [ -d gpu-wheels ] && ! "$PY" -c "import mlflow, psutil, pynvml, tqdm" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --find-links gpu-wheels mlflow-skinny psutil \
            nvidia-ml-py tqdm || echo "!! installing the carried wheels failed"
    fi
    "$PY" -c "import mlflow" 2>/dev/null || { export MLFLOW_ALLOW_FILE_STORE=true; }
    STEP=(--repeats 3 --steps 5 --memory-steps 2)
    BATCHES=(100 512)
    EPOCH=(--methods vanilla,adautomix --precision fp32,bf16 --eval-batch-size 1000)
    DISTRIBUTED=(--methods vanilla,adautomix --batch-size 256 --steps 10 --warmup 3 --repeats 2)
fi
"$PY" -c "import importlib.util as u, sys, torch; print('python', sys.version.split()[0], 'torch',
torch.__version__, 'not installed:', [m for m in ('numpy', 'scipy', 'PIL', 'tqdm', 'mlflow',
'sqlalchemy', 'psutil', 'pynvml', 'gco', 'cv2') if u.find_spec(m) is None])"

for batch in "${BATCHES[@]}"; do
    part "step_cost batch $batch" 100 "$PY" bench/step_cost.py "${STEP[@]}" --device "$DEVICE" \
        --precision fp32,bf16 --batch-size "$batch" --json "$OUT/step_cost_b$batch.json"
done
part epoch 170 "$PY" bench/epoch.py "${EPOCH[@]}" --device "$DEVICE" --json "$OUT/epoch.json"
# Issue 18: one GPU with and without the distributed code path (plain process vs torchrun×1);
# the overhead must stay under 3%. CIFAR ResNet-18, vanilla and AdAutoMix.
part distributed 75 "$PY" bench/distributed.py --device "$DEVICE" --ranks 1 "${DISTRIBUTED[@]}"

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "bench/gpu.sh: failed: ${FAILED[*]}"
    exit 1
fi
echo "bench/gpu.sh: every part ran; figures in $OUT"
