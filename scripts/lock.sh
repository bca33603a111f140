#!/usr/bin/env bash
# Regenerates the two lock files from pyproject.toml, with a hash for every file of every package:
#   requirements.lock      what the image installs: the package's dependencies, the dali,
#                          pipeline and server extras, and the build tools (setuptools, wheel)
#                          that an offline `pip install .` and the source-only packages need
#   requirements-dev.lock  what .venv installs: all of the above at the same versions, plus the
#                          test and dev extras (pytest, moto, the validators, uv)
# Versions already in the locks are kept; pass uv's own flags to move them, e.g.
#   bash scripts/lock.sh                              after adding a dependency to pyproject.toml
#   bash scripts/lock.sh --upgrade-package mlflow     move one package (and what it needs)
# uv resolves for the one platform both the image and .venv run on: CPython 3.11, Linux x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-}
if [ -z "$UV" ]; then
  if [ -x .venv/bin/uv ]; then UV=.venv/bin/uv
  elif command -v uv >/dev/null; then UV=uv
  else
    echo "error: uv is not installed; run 'bash scripts/setup.sh' (it installs uv into .venv) or 'pip install uv==0.13.8'" >&2
    exit 2
  fi
fi

# The build system's requirements, read from pyproject.toml, plus wheel, so the image can build
# the package and the source-only packages with no network.
build_requirements=$(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
build_in=$(mktemp --suffix=.in)
trap 'rm -f "$build_in"' EXIT
printf '%s\nwheel\n' "$build_requirements" > "$build_in"

compile() {
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/lock.sh" \
    --no-annotate "$@"
}
compile pyproject.toml "$build_in" --extra dali --extra pipeline --extra server -o requirements.lock "${@}"
# Constrained by the runtime lock, so .venv runs exactly the image's versions.
compile pyproject.toml "$build_in" --extra dali --extra pipeline --extra server --extra test --extra dev \
  -c requirements.lock -o requirements-dev.lock "${@}"
echo "requirements.lock: $(grep -c '==' requirements.lock) packages; requirements-dev.lock: $(grep -c '==' requirements-dev.lock)"
