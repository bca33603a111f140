#!/usr/bin/env bash
# Makes a local base image with Python 3.11 for machines that reach Debian's archive but no image
# registry: a minimal Debian bookworm root file system (debootstrap, about 3 minutes) with
# python3.11 and its venv module, imported into podman's image store. Build on it with
#   make -C docker build DOCKER=podman PYTHON_IMAGE=localhost/bookworm-python:3.11
# Needs root and the debootstrap and podman packages (apt-get install debootstrap podman).
#   usage: bash docker/local-base.sh [TAG]        (default localhost/bookworm-python:3.11)
# DEBIAN_MIRROR overrides the archive (default: the one apt uses here, else deb.debian.org).
set -euo pipefail

TAG=${1:-localhost/bookworm-python:3.11}
if [ "$(id -u)" != 0 ]; then
  echo "error: debootstrap needs root; run: sudo bash $0 $TAG" >&2
  exit 2
fi
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install -y $tool" >&2; exit 2; }
done
mirror=${DEBIAN_MIRROR:-$(grep -hoE '^(URIs:|deb) +http[^ ]*/debian\b' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | head -1 | awk '{print $2}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/bookworm-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap bookworm (minbase + python3, python3-venv) from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
version=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = 3.11 ] || { echo "error: bookworm gave Python $version, not 3.11" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

echo "==> podman import $TAG"
tar -C "$rootfs" -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG" >/dev/null
podman image ls "$TAG"
