"""Imports flow one way: pipeline/ -> components/ -> adautomix, with no cycles among the
package's modules nor among its sub-packages, each third-party system imported only where
docs/architecture.md says, and the cheap entry points stay cheap.

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
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
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
    path.write_text(
        "from .sibling import thing\nfrom pkg import sub\n"
        "def f():\n    from pipeline.run import x\n"
    )
    names = imported_names("pkg.mod", path, {"pkg.sibling", "pkg.sub", "pkg"})
    assert names == {"pkg.sibling", "pkg.sub", "pipeline.run"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_never_imports_the_layers_built_on_it():
    _, tops = import_graph()
    upward = {
        name: sorted(found & {"pipeline", "components", "kfp"})
        for name, found in tops.items()
        if name.startswith("adautomix")
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_components_never_import_the_pipeline():
    _, tops = import_graph()
    assert {
        n for n, found in tops.items() if n.startswith("components") and "pipeline" in found
    } == set()


def test_the_pipeline_never_imports_the_packages_command_line():
    """pipeline/ has its own front door: the flag builder and the error reporting it shares with
    `adautomix` are library modules (adautomix.config_flags, adautomix.command_runner), and the
    package's command line is not one."""
    edges, _ = import_graph()
    assert {
        name: sorted(imported)
        for name, imported in edges.items()
        if name.startswith("pipeline") and "adautomix.cli" in imported
    } == {}


def test_no_test_module_imports_another_or_a_conftest():
    """What test modules share lives in fixtures or in helper modules named for what they hold:
    a test module imported by another runs its tests' module code twice, and a conftest.py
    imported as a module is a second copy of it beside the one pytest loaded."""
    files = {}
    for path in (ROOT / "tests").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    offending = {
        name: sorted(
            n
            for n in imported_names(name, path, set(files))
            if n.rpartition(".")[2].startswith("test_") or n.rpartition(".")[2] == "conftest"
        )
        for name, path in files.items()
    }
    assert {name: found for name, found in offending.items() if found} == {}


def test_no_import_cycles_among_the_projects_modules():
    edges, _ = import_graph()
    assert cycles(edges) == []


def package_of(module: str, packages: set[str]) -> str:
    """The unit `module` ranks as: its sub-package of adautomix (adautomix.engine, ...), else
    itself (a module at the package's root, a layer's module)."""
    parts = module.split(".")
    if len(parts) > 2 and ".".join(parts[:2]) in packages:
        return ".".join(parts[:2])
    return module


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each sub-package of adautomix drawn as one node."""
    packages = {
        name
        for name, path in module_files().items()
        if path.name == "__init__.py" and name.count(".") == 1
    }
    graph: dict[str, set[str]] = {}
    for name, imported in edges.items():
        node = package_of(name, packages)
        graph.setdefault(node, set()).update(package_of(other, packages) for other in imported)
        graph[node].discard(node)
    return graph


def test_the_graph_of_packages_has_a_rank_for_each_package():
    """Sub-packages rank too: engine above mixers means no module of mixers imports one of
    engine, even where the modules themselves form no cycle (learned_mix -> engine.ema -> ...
    did not, yet it ran back up)."""
    assert cycles({"a.x": {"b.y"}, "b.y": set(), "b.z": {"a.w"}, "a.w": set()}) == []
    assert package_graph(
        {
            "adautomix.mixers.a": {"adautomix.engine.b"},
            "adautomix.engine.c": {"adautomix.mixers.d", "adautomix.config"},
        }
    ) == {
        "adautomix.mixers": {"adautomix.engine"},
        "adautomix.engine": {"adautomix.mixers", "adautomix.config"},
    }
    edges, _ = import_graph()
    assert cycles(package_graph(edges)) == []


def is_cluster_module(name: str) -> bool:
    """The Kubernetes modules: the sub-package adautomix.cluster, whatever its modules' names."""
    return name == "adautomix.cluster" or name.startswith("adautomix.cluster.")


# Each third-party system, the top-level names it is imported under, and who may import it
# (docs/architecture.md, "Layers"). The Kubernetes rule binds the package only: the pipeline
# layer reads the namespace before it submits (pipeline/preflight.py, run.py).
ONLY_THESE_IMPORT = {
    "MLflow": (("mlflow",), lambda n: n in ("adautomix.tracking", "adautomix.registry")),
    "DALI": (("nvidia.dali",), lambda n: n == "adautomix.data.dali"),
    "DVC": (
        ("dvc", "dvc_s3", "dvc_objects", "dvc_data"),
        lambda n: n == "adautomix.data.dvc_adapter",
    ),
    "the Kubernetes client": (
        ("kubernetes", "kubeflow.training", "kubeflow_trainer_api"),
        lambda n: is_cluster_module(n) or not n.startswith("adautomix"),
    ),
}


@pytest.mark.parametrize("system", sorted(ONLY_THESE_IMPORT))
def test_each_system_is_imported_only_where_the_map_says(system):
    names, allowed = ONLY_THESE_IMPORT[system]
    files = module_files()
    importers = {
        module
        for module, path in files.items()
        if any(
            found == name or found.startswith(name + ".")
            for name in names
            for found in imported_names(module, path, set(files))
        )
    }
    assert importers, f"nothing imports {system}: the rule is stale"
    assert sorted(m for m in importers if not allowed(m)) == []


def test_the_cluster_rule_covers_every_module_of_the_cluster_folder_and_no_other():
    """The rule names modules; the sub-package is a folder. Every module under adautomix/cluster/
    (its __init__ and each file beside it) is one the Kubernetes client may be imported in, and
    no module elsewhere is, whatever its name starts with."""
    folder = ROOT / "adautomix" / "cluster"
    files = module_files()
    in_folder = {name for name, path in files.items() if path.is_relative_to(folder)}
    assert "adautomix.cluster" in in_folder and len(in_folder) > 1  # a package with modules
    assert {name for name in files if is_cluster_module(name)} == in_folder
    assert not is_cluster_module("adautomix.clusters")  # a sibling whose name starts alike


@pytest.mark.parametrize(
    "entry, banned",
    [
        # checking and compiling a pipeline reads .dvc files and builds the graph: no DVC, no MLflow
        ("import pipeline.run", ("dvc", "mlflow")),
        # what every component imports at the top, in every step's process
        (
            "import components.data, components.train, components.train_job, components.evaluate, "
            "components.register",
            ("dvc", "mlflow", "torch"),
        ),
        ("import adautomix.steps, adautomix.registry", ("dvc", "mlflow", "torch")),
    ],
)
def test_entry_points_import_only_what_they_need(entry, banned):
    code = f"import sys; {entry}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out.strip().splitlines()[-1]))
    assert loaded.isdisjoint(banned), sorted(loaded & set(banned))
