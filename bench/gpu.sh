#!/usr/bin/env bash
# The one prepared GPU script: every figure docs/benchmarks.md wants from a GPU, in one short run
# for a lent GPU machine (its budget is minutes: keep each part small and under its timeout).
#
#   bash bench/gpu.sh                 # figures printed and kept under $OUT (default /tmp/bench-gpu)
#
# Add a part as a function below and call it at the end; each part's output goes to its own file.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-/tmp/bench-gpu}
mkdir -p "$OUT"

part() {   # part NAME TIMEOUT COMMAND...: run, tee to $OUT/NAME.txt, never stop the other parts
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$OUT/$name.txt"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt" || echo "!! $name failed or timed out" | tee -a "$OUT/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

# Issue 18: one GPU with and without the distributed code path (plain process vs torchrun×1);
# the overhead must stay under 3%. CIFAR ResNet-18, vanilla and AdAutoMix.
part distributed 240 "$PY" bench/distributed.py --device cuda --ranks 1 --methods vanilla,adautomix \
    --batch-size 256 --steps 20 --warmup 5 --repeats 3
