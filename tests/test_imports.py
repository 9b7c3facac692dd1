"""The house's import rules, read from the source with `ast` (nothing is imported, so this runs in a second).

- No circles in `instrusense/` or `finetune/` (lazy imports inside functions count: they are arrows too).
- The CLI (`instrusense.cli`) is a face on top: nothing else in the library imports it.
- Inner layers never import outer ones: the library imports no face (`app`, Gradio) and never `finetune`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("instrusense", "finetune")
FACES = ("instrusense.cli", "instrusense.__main__")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every module (and `module.name`) the file imports, anywhere in it, with relative imports resolved."""
    me = module_name(path, root).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imported_names(path) if m in known and m != name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_face(module: str) -> bool:
    return any(module == face or module.startswith(face + ".") for face in FACES)


def test_the_walker_sees_a_circle_and_a_lazy_import(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    (tmp_path / "instrusense").mkdir()
    lazy = tmp_path / "instrusense" / "probe.py"
    lazy.write_text("def f():\n    from .cli import main\n    import finetune.train\n")
    assert {"instrusense.cli", "instrusense.cli.main", "finetune.train"} <= imported_names(lazy, tmp_path)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package):
    graph = import_graph()
    assert [c for c in cycles(graph) if c[0].startswith(package + ".") or c[0] == package] == []


def test_nothing_in_the_library_imports_the_cli():
    offenders = {name: sorted(m for m in imported if _is_face(m))
                 for name, imported in import_graph().items()
                 if name.startswith("instrusense") and not _is_face(name)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_library_imports_no_face_and_no_training_code():
    outer = ("app", "app_live", "space_guards", "gradio", "finetune", "benchmarks")
    offenders = {}
    for name, path in modules().items():
        if name.startswith("instrusense"):
            bad = sorted(m for m in imported_names(path) if m.split(".")[0] in outer)
            if bad:
                offenders[name] = bad
    assert offenders == {}


def test_training_imports_no_evaluation_command():
    """`finetune.evaluation` holds commands on top of training (the AST baseline trains through `finetune.train`);
    what training and those commands share (metrics, clip scoring) lives below both, so nothing outside
    `finetune.evaluation` imports it."""
    offenders = {name: sorted(m for m in imported if m.split(".")[:2] == ["finetune", "evaluation"])
                 for name, imported in import_graph().items()
                 if name.startswith("finetune") and name.split(".")[:2] != ["finetune", "evaluation"]}
    assert {k: v for k, v in offenders.items() if v} == {}
