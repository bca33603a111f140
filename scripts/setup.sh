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
# The lock holds every package at an exact version (torch 2.14.0 + torchvision 0.29.0 CUDA builds,
# which also run on the CPU); pip skips what is already installed.
echo "==> installing locked dependencies (first time: about 4 minutes, 7 GB; then seconds)"
.venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
echo "==> preparing the default dataset"
.venv/bin/adautomix data prepare fashion-mnist
