#!/usr/bin/env bash
# The image smoke check: builds the image with podman/buildah (chroot isolation, so no container
# runtime is needed) on a local base, then runs inside it, as the image's user, `adautomix --help`
# and each pipeline step's function in order on a small Fashion-MNIST subset: data -> train one
# epoch -> evaluate -> register, into a workspace and an MLflow store (SQLite) in a mounted host
# folder. Prints the image size and each stage's time; a failed or missing stage fails it.
#   bash docker/smoke.sh           (or make -C docker smoke; root, podman, buildah, debootstrap)
# IMAGE, PYTHON_IMAGE (the base; made with docker/local-base.sh when it is a missing localhost/
# image) and SMOKE_DIR (the mounted folder, kept afterwards) override the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/adautomix:smoke}
BASE=${PYTHON_IMAGE:-localhost/bookworm-python:3.11}
WORK=${SMOKE_DIR:-$(mktemp -d /var/tmp/adautomix-smoke.XXXXXX)}
FMNIST=/usr/share/datasets/fashion-mnist
mkdir -p "$WORK/logs" "$WORK/state"
LOG=$WORK/logs/smoke.log

# stage NAME COMMAND...: runs it with its output in logs/NAME.log; prints one parsable line
stage() {
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" > "$WORK/logs/$name.log" 2>&1
  local status=$?
  end=$(date +%s.%N)
  if [ $status = 0 ]; then
    printf 'stage %s ok %.1f s\n' "$name" "$(awk "BEGIN {print $end - $start}")"
  else
    printf 'stage %s FAILED %.1f s (exit %d; log %s)\n' "$name" "$(awk "BEGIN {print $end - $start}")" \
      $status "$WORK/logs/$name.log"
    tail -15 "$WORK/logs/$name.log" | sed 's/^/    /'
  fi
  return $status
}

in_image() {   # runs a command in the working container, the state folder mounted at /ws
  buildah run --isolation chroot -v "$WORK/state:/ws" -v "$FMNIST:$FMNIST:ro" --workingdir /ws \
    "$ctr" -- "$@"
}

registered() {   # read from the host: the mounted store holds a version of the model
  python3 - "$WORK/state/mlflow.db" <<'EOF'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "select name, version from model_versions").fetchall()
print(rows)
sys.exit(0 if rows else 1)
EOF
}

smoke() {
  [ -f "$FMNIST/train-images-idx3-ubyte.gz" ] \
    || { echo "error: $FMNIST is missing: apt-get install -y dataset-fashion-mnist"; return 1; }
  if [[ $BASE == localhost/* ]] && ! podman image exists "$BASE"; then
    stage base bash docker/local-base.sh "$BASE" || return 1
  fi
  stage build make -C docker build DOCKER=podman ISOLATION=chroot PYTHON_IMAGE="$BASE" \
    IMAGE="$IMAGE" || return 1
  printf 'image %s size %s bytes\n' "$IMAGE" "$(podman image inspect --format '{{.Size}}' "$IMAGE")"
  ctr=$(buildah from --quiet "$IMAGE") || return 1
  trap 'buildah rm "$ctr" >/dev/null' RETURN
  # the image's user must own the mounted folder, as on a volume with the pod's fsGroup
  cp docker/smoke_steps.py "$WORK/state/" && chown -R 1000:0 "$WORK/state"
  buildah config --env MLFLOW_TRACKING_URI=sqlite:////ws/mlflow.db \
    --env PYTHONPATH=/opt/adautomix --env OMP_WAIT_POLICY=PASSIVE "$ctr"
  stage help in_image adautomix --help || return 1
  for step in data train evaluate register; do
    stage "$step" in_image python3 /ws/smoke_steps.py "$step" /ws || return 1
  done
  stage registered registered
}

smoke 2>&1 | tee "$LOG"
python3 docker/smoke_report.py "$LOG"
