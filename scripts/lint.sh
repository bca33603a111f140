#!/usr/bin/env bash
# ruff's lint rules and format check over the whole checkout (settings: pyproject.toml).
# `bash scripts/lint.sh --fix` applies what ruff can fix and formats the code instead.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF=.venv/bin/ruff
if [ "${1:-}" = "--fix" ]; then
  "$RUFF" check --fix .
  "$RUFF" format .
else
  "$RUFF" check .
  "$RUFF" format --check .
fi
