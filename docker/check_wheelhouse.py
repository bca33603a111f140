"""Check that a wheelhouse holds a file of every package a lock pins, before an offline install.

pip offline says only "No matching distribution" for the first package it misses; this names
every missing one, with the fix. Standard library only: it runs in the bare base image.
    python3 check_wheelhouse.py requirements.lock WHEELHOUSE"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
# A wheel's name has no hyphens (NAME-VERSION[-BUILD]-PY-ABI-PLATFORM.whl); an sdist's may
# (NAME-VERSION.tar.gz), so its version is what follows the last hyphen.
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
SDIST = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)\.(tar\.gz|zip)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> list[tuple[str, str]]:
    return [
        (canonical(m[1]), m[2]) for line in lock.read_text().splitlines() if (m := PIN.match(line))
    ]


def available(wheelhouse: Path) -> set[tuple[str, str]]:
    found = set()
    for path in wheelhouse.iterdir():
        if match := WHEEL.match(path.name) or SDIST.match(path.name):
            found.add((canonical(match["name"]), match["version"]))
    return found


def missing(lock: Path, wheelhouse: Path) -> list[str]:
    have = available(wheelhouse)
    return [f"{name}=={version}" for name, version in pins(lock) if (name, version) not in have]


def main(argv: list[str]) -> int:
    lock, wheelhouse = Path(argv[0]), Path(argv[1])
    if not wheelhouse.is_dir() or not any(wheelhouse.iterdir()):
        print(
            f"error: the wheelhouse {wheelhouse} is empty or missing: run 'make -C docker "
            f"wheelhouse' "
            "on a machine that reaches PyPI",
            file=sys.stderr,
        )
        return 1
    absent = missing(lock, wheelhouse)
    if absent:
        print(
            f"error: the wheelhouse lacks {len(absent)} package(s) of {lock.name}: "
            f"{', '.join(absent)}; "
            "run 'make -C docker wheelhouse' again (it downloads what is missing)",
            file=sys.stderr,
        )
        return 1
    print(f"wheelhouse: all {len(pins(lock))} packages of {lock.name} present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
