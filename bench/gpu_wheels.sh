#!/usr/bin/env bash
# Downloads, here (with network), the wheels bench/gpu.sh installs on a bare GPU machine (Python
# 3.12 and torch, nothing else that this needs; no network there): MLflow's tracking client with
# its dependencies (mlflow-skinny and mlflow-tracing, about 17 MB), psutil and nvidia-ml-py for
# MLflow's system metrics, and tqdm. They go to gpu-wheels/ (ignored by git); carry that folder with the
# run (the device tool's `carry`).
#
#   bash bench/gpu_wheels.sh && ls gpu-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
MLFLOW=$(grep -o '"mlflow==[0-9.]*"' pyproject.toml | tr -d '"' | cut -d= -f3)
"$PY" -m pip download --quiet --dest gpu-wheels --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    "mlflow-skinny==$MLFLOW" "mlflow-tracing==$MLFLOW" psutil nvidia-ml-py tqdm
du -sh gpu-wheels
