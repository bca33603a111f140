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
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def test_the_reader_finds_paths_folders_and_test_names():
    text = (
        "see `tests/engine/test_resume.py::test_x` and tests/deploy/, "
        "tests/test_cli.py (and tests/models)."
    )
    assert citations(text) == [
        "tests/deploy/",
        "tests/engine/test_resume.py::test_x",
        "tests/models",
        "tests/test_cli.py",
    ]


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


SPEC = ROOT / "docs" / "adautomix-spec.md"
SPEC_CITATION = re.compile(
    r"spec (§[\d.]*\d(?:(?:, | and )§[\d.]*\d)*)"
    r"(?: steps? (\d+)(?:-(\d+))?)?"
)


def spec_sections() -> tuple[set[str], int]:
    """The numbered sections of the algorithm reference, and how many steps its §2 has."""
    text = SPEC.read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))
    step_two = text.split("\n## 2. ")[1].split("\n## 3. ")[0]
    return sections, max(map(int, re.findall(r"^(\d+)\. ", step_two, re.MULTILINE)))


def test_every_spec_section_the_code_cites_is_in_the_repository():
    """The code cites the algorithm reference as "spec §N" (docs/adautomix-spec.md); each cited
    section, and each step of §2, is there."""
    sections, steps = spec_sections()
    assert {"1", "2", "3", "5.2", "7.5", "10", "11"} <= sections and steps == 10
    sources = [
        *(
            p
            for layer in ("adautomix", "components", "pipeline", "tests", "bench")
            for p in (ROOT / layer).rglob("*.py")
        ),
        *DOCS,
    ]
    cited, missing = set(), []
    for path in sources:
        for numbers, first, last in SPEC_CITATION.findall(path.read_text()):
            for section in re.findall(r"§([\d.]*\d)", numbers):
                cited.add(section)
                if section not in sections:
                    missing.append(f"{path.relative_to(ROOT)}: §{section}")
            if first and int(last or first) > steps:
                missing.append(f"{path.relative_to(ROOT)}: §2 step {last or first}")
    assert len(cited) >= 10 and missing == []
