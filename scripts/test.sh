#!/usr/bin/env bash
# Sets up what is missing, then runs the whole test suite (CPU only; GPU tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Passive OpenMP threads: spinning ones steal the cores from the servers and subprocesses the tests start.
export OMP_WAIT_POLICY=PASSIVE
# Two workers (pytest-xdist), each test file on one of them: the suite is mostly one busy core at a
# time (small networks, servers and subprocesses it waits for), so the second core halves it.
# TEST_WORKERS=0 runs it in this one process; a file's module fixtures are built once either way.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
