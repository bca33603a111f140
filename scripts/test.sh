#!/usr/bin/env bash
# Sets up what is missing, then runs the whole test suite (CPU only; GPU tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Passive OpenMP threads: spinning ones steal the cores from the servers and subprocesses the tests start.
export OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
