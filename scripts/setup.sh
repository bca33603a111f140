#!/usr/bin/env bash
# Sets up a fresh machine: the system packages, a virtual environment at .venv/ with the locked
# dependencies, the package itself, and the default dataset. Safe to run again: it only does
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing Debian's dataset-fashion-mnist (the real Fashion-MNIST, offline)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "note: cannot install dataset-fashion-mnist without root; torchvision will download Fashion-MNIST if online"
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# uv installs the lock (a fresh machine: about 2 minutes instead of pip's 4). It comes first,
# through pip, at the version and hashes requirements-dev.lock holds for it.
if [ ! -x .venv/bin/uv ]; then
  echo "==> installing uv"
  uv_entry=$(mktemp)
  awk '/^uv==/ {take = 1} take {print} take && !/\\$/ {exit}' requirements-dev.lock > "$uv_entry"
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$uv_entry"
  rm -f "$uv_entry"
fi
# requirements-dev.lock holds every package at an exact version and hash (torch 2.14.0 +
# torchvision 0.29.0 CUDA builds, which also run on the CPU); uv skips what is already installed.
# Sizes as installed (du -sh): .venv 7.0 GB, of which torch 1.1, nvidia-* 3.8 (DALI 0.5 of it),
# triton 0.9.
echo "==> installing locked dependencies (first time: minutes, 7 GB installed, 5.7 GB of it" \
     "PyTorch with its CUDA libraries; then a second)"
# --compile-bytecode: uv installs no bytecode otherwise, and where PYTHONDONTWRITEBYTECODE is set
# (this kind of machine sets it) Python never writes any: every process then compiles torch and
# MLflow from source, about 5 s of CPU more a start (a tiny `adautomix train`: 22 s instead of
# 10). uv compiles the whole venv whenever it installs something, and nothing when it does not.
.venv/bin/uv pip install --quiet --python .venv/bin/python --require-hashes --compile-bytecode \
  -r requirements-dev.lock
# A venv installed before that: compiled once here; one that has bytecode costs one file check.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
marker=$(.venv/bin/python -c "import importlib.util as u; print(u.cache_from_source(u.find_spec('torch').origin))")
if [ ! -f "$marker" ]; then
  echo "==> compiling the dependencies to bytecode (once, about a minute)"
  # a few packages ship Python 2 examples that cannot compile: expected, and nothing imports them
  .venv/bin/python -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
  [ -f "$marker" ] || { echo "error: compiling $site to bytecode failed (is it writable?)" >&2; exit 1; }
fi
# setuptools comes from the lock, so the package builds with no network.
if ! .venv/bin/uv pip show --python .venv/bin/python adautomix 2>/dev/null \
    | grep -qxF "Editable project location: $PWD"; then
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation -e .
fi
echo "==> preparing the default dataset"
.venv/bin/adautomix data prepare fashion-mnist
