"""Imports flow one way: pipeline/ -> components/ -> adautomix, with no cycles among the
package's modules, and the cheap entry points stay cheap.

The graph is read from the source with `ast`, so a function-level (lazy) import counts as much
as one at the top: a cycle hidden inside a function is still a cycle a newcomer has to untangle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("adautomix", "components", "pipeline")


def module_files() -> dict[str, Path]:
    files = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules `name` imports, absolute. `from package import submodule` counts as an import of
    the submodule only: the package's __init__ runs either way, as every submodule's does."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            submodules = {f"{module}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(module)
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges among the project's modules, every top-level name each module imports)."""
    files = module_files()
    edges, tops = {}, {}
    for name, path in files.items():
        names = imported_names(name, path, set(files))
        edges[name] = {n for n in names if n in files and n != name}
        tops[name] = {n.split(".")[0] for n in names}
    return edges, tops


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_sees_lazy_and_relative_imports(tmp_path):
    """The reader itself, on a hand-made module: a relative import, a submodule import, a lazy
    import inside a function."""
    path = tmp_path / "mod.py"
    path.write_text("from .sibling import thing\nfrom pkg import sub\n"
                    "def f():\n    from pipeline.run import x\n")
    names = imported_names("pkg.mod", path, {"pkg.sibling", "pkg.sub", "pkg"})
    assert names == {"pkg.sibling", "pkg.sub", "pipeline.run"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_never_imports_the_layers_built_on_it():
    _, tops = import_graph()
    upward = {name: sorted(found & {"pipeline", "components", "kfp"})
              for name, found in tops.items() if name.startswith("adautomix")}
    assert {name: found for name, found in upward.items() if found} == {}


def test_components_never_import_the_pipeline():
    _, tops = import_graph()
    assert {n for n, found in tops.items() if n.startswith("components") and "pipeline" in found} == set()


def test_no_import_cycles_among_the_projects_modules():
    edges, _ = import_graph()
    assert cycles(edges) == []


@pytest.mark.parametrize("entry, banned", [
    # checking and compiling a pipeline reads .dvc files and builds the graph: no DVC, no MLflow
    ("import pipeline.run", ("dvc", "mlflow")),
    # what every component imports at the top, in every step's process
    ("import components.data, components.train, components.train_job, components.evaluate, "
     "components.register",
     ("dvc", "mlflow", "torch")),
    ("import adautomix.steps, adautomix.registry", ("dvc", "mlflow", "torch")),
])
def test_entry_points_import_only_what_they_need(entry, banned):
    code = f"import sys; {entry}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    loaded = set(ast.literal_eval(out.strip().splitlines()[-1]))
    assert loaded.isdisjoint(banned), sorted(loaded & set(banned))
