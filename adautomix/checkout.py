"""The commit a checkout's package comes from, named so that uncommitted changes do not pass for
their HEAD: `COMMIT`, or `COMMIT.dirty.HASH` where HASH (12 hex digits) is a sha256 of the
package folder's uncommitted changes (its diff against HEAD and its untracked files).

Standard library only, and runnable as a script (`python3 adautomix/checkout.py` prints it), so
that docker/Makefile bakes into an image ($ADAUTOMIX_GIT_COMMIT) exactly the name that a run from
the same checkout computes (adautomix.provenance.git_commit)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

UNKNOWN = "unknown"
PACKAGE = Path(__file__).resolve().parent


def commit(folder: str | Path = PACKAGE) -> str:
    """The commit of the code in `folder` (see the module's docstring); 'unknown' where `folder`
    is not tracked in a git checkout (an installed copy, an image) or git is missing."""
    folder = Path(folder)

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, check=True, timeout=30
        ).stdout

    try:
        # A copy installed into a virtualenv inside a checkout lies in that checkout's tree too:
        # only a folder whose own files git tracks is the checkout's code.
        if not git("ls-files", "-z", "--", "."):
            return UNKNOWN
        head = git("rev-parse", "HEAD").decode().strip()
        if not git("status", "--porcelain", "--untracked-files=all", "--", "."):
            return head
        top = Path(git("rev-parse", "--show-toplevel").decode().strip())
        untracked = git(
            "ls-files", "-z", "--others", "--exclude-standard", "--full-name", "--", "."
        )
        digest = hashlib.sha256(
            git("diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--", ".")
        )
        digest.update(untracked)  # the names, then the bytes: a rename is a change too
        for name in filter(None, untracked.split(b"\0")):
            digest.update((top / name.decode()).read_bytes())
        return f"{head}.dirty.{digest.hexdigest()[:12]}"
    except (OSError, UnicodeDecodeError, subprocess.SubprocessError):
        return UNKNOWN


if __name__ == "__main__":
    print(commit(sys.argv[1] if len(sys.argv) > 1 else PACKAGE))
