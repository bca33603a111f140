"""Read the smoke check's own output back: every stage present and ok, and the image size
printed; exit 1 naming what failed or is missing. docker/smoke.sh ends with it.
    python3 smoke_report.py SMOKE_LOG"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REQUIRED = ("build", "help", "data", "train", "evaluate", "register", "registered")
STAGE = re.compile(r"^stage (?P<name>\S+) (?P<status>ok|FAILED) (?P<seconds>[0-9.]+) s\b", re.M)
SIZE = re.compile(r"^image (?P<image>\S+) size (?P<bytes>\d+) bytes$", re.M)


def report(text: str) -> tuple[list[str], list[str]]:
    """(summary lines, problems)."""
    stages = {m["name"]: (m["status"], float(m["seconds"])) for m in STAGE.finditer(text)}
    problems = [f"stage {name} failed" for name, (status, _) in stages.items() if status != "ok"]
    problems += [f"stage {name} did not run" for name in REQUIRED if name not in stages]
    size = SIZE.search(text)
    if not size:
        problems.append("no image size printed")
    lines = [f"image {size['image']}: {int(size['bytes']) / 1e9:.2f} GB"] if size else []
    lines += [
        f"{name:<11}{status:<7}{seconds:8.1f} s" for name, (status, seconds) in stages.items()
    ]
    lines.append(f"{'total':<18}{sum(s for _, s in stages.values()):8.1f} s")
    return lines, problems


def main(argv: list[str]) -> int:
    lines, problems = report(Path(argv[0]).read_text())
    print("\n".join(["smoke check:", *("  " + line for line in lines)]))
    if problems:
        print(f"smoke check FAILED: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print("smoke check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
