#!/usr/bin/env bash
# Sets up what is missing, then runs the whole test suite (CPU only; GPU tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
