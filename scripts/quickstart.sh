#!/usr/bin/env bash
# The main job: set up, then train a CIFAR-style ResNet-18 with AdAutoMix on a Fashion-MNIST subset
# (a few minutes on 2 CPU cores) and print its accuracy and where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/adautomix train --dataset fashion-mnist --model resnet18 --method adautomix \
  --epochs 2 --subset 2000 --val-subset 2000 --batch-size 50 --lr 0.05 \
  --output-dir runs/quickstart --experiment quickstart "$@"
