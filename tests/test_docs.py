"""The docs cite tests as their evidence (docs/reliability.md's tables, the architecture map):
every test file, folder and `tests/FILE.py::name` they cite exists, so a renamed or removed
test cannot leave a claim pointing at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
CITATION = re.compile(r"\btests/[\w/.-]*\w(?:/|\.py)?(?:::\w+)?")


def citations(text: str) -> list[str]:
    return sorted(set(CITATION.findall(text)))


def defined_names(path: Path) -> set[str]:
    """Every function and class a test file defines, at any depth (test classes' methods)."""
    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def test_the_reader_finds_paths_folders_and_test_names():
    text = ("see `tests/engine/test_resume.py::test_x` and tests/deploy/, "
            "tests/test_cli.py (and tests/models).")
    assert citations(text) == ["tests/deploy/", "tests/engine/test_resume.py::test_x",
                               "tests/models", "tests/test_cli.py"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_doc_cites_exists(doc):
    missing = []
    for cited in citations(doc.read_text()):
        path, _, name = cited.partition("::")
        if not (ROOT / path).exists():
            missing.append(cited)
        elif name and name not in defined_names(ROOT / path):
            missing.append(cited)
    assert missing == []
