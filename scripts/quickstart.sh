#!/usr/bin/env bash
# The main job as a pipeline: set up what is missing, then run the whole Kubeflow pipeline on this
# machine with kfp.local (DVC data version -> train AdAutoMix -> evaluate -> MLflow registry) on a
# Fashion-MNIST subset, in a few minutes on 2 CPU cores. It ends by printing where MLflow is, the
# registered model with its aliases, and how to open the MLflow UI. Extra flags go to
# `python -m pipeline run --local` (see --help), e.g. --method mixup or --epochs 4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pipeline run --local --dataset fashion-mnist --model resnet18 \
  --method adautomix --epochs 2 --subset 500 --val-subset 500 --batch-size 50 --lr 0.05 \
  --num-gpus 0 --experiment quickstart-pipeline "$@"
