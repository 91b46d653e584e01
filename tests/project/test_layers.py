"""The package's layers (core, stores, guard, diagnosis, ASGI, tools): imports run one way.

Read from the source with `ast`, so lazy imports inside functions count as much as the ones at
the top: a layer that imports a higher one, even lazily, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "tba_guard"
#: Bottom first. A module may import its own layer and the layers before it, never one after.
LAYERS = ("core", "stores", "guard", "diagnosis", "asgi", "tools", "")


def module_name(path: Path) -> str:
    parts = ["tba_guard", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    first = module.split(".")[1] if module.count(".") else ""
    return LAYERS.index(first if first in LAYERS else "")


def imports_of(path: Path) -> set[str]:
    """Every tba_guard module the file imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tba_guard"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("tba_guard"):
                continue
            found.add(target)  # `from . import receiving` imports the package as well
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if (PACKAGE.parent / submodule.replace(".", "/")).with_suffix(".py").exists():
                    found.add(submodule)
    found.discard(name)
    return found


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_folders_are_the_layers() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == ["asgi", "core", "diagnosis", "stores", "tools"]
    assert (PACKAGE / "guard.py").exists()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_and_those_below(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if layer_of(m) > layer_of(module))
    assert not upward, f"{module} imports a higher layer: {upward}"


def test_the_core_imports_nothing_outside_the_core() -> None:
    for module, imported in GRAPH.items():
        if module.startswith("tba_guard.core"):
            assert all(m.startswith("tba_guard.core") for m in imported), (module, imported)


def test_the_core_never_imports_the_diagnosis() -> None:
    """The core verifies, and nothing else: why a request failed is the diagnosis's to say."""
    for module, imported in GRAPH.items():
        if module.startswith("tba_guard.core"):
            assert not any(m.startswith("tba_guard.diagnosis") for m in imported), module


def test_there_is_no_import_circle() -> None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting, module])
        visiting.append(module)
        for imported in GRAPH.get(module, ()):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in GRAPH:
        visit(module)


def test_the_hot_path_does_not_load_the_diagnostics() -> None:
    """`explain` and the diagnosis are loaded for development hints only, lazily."""
    hot = ("tba_guard.asgi.middleware", "tba_guard.asgi.answers", "tba_guard.guard")
    for module in (*hot, "tba_guard.core.checks"):
        tree = ast.parse((PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text())
        top_level = {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
        diagnostics = ("diagnosis", "hints", "mistakes", "explain")
        assert not any(name in m for m in top_level for name in diagnostics)


#: Where the order of checks is declared (and its parts derived once) and where it is run.
SEQUENCE_OWNERS = {"tba_guard.core.sequence", "tba_guard.core.scheme", "tba_guard.guard"}
_SEQUENCE_NAMES = {"SEQUENCE", "sequence", "before_body", "after_body"}


def iterated_names(tree: ast.AST) -> set[str]:
    """The names and attributes that `for` loops and comprehensions iterate over."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for part in ast.walk(node.iter):
                if isinstance(part, ast.Name):
                    found.add(part.id)
                elif isinstance(part, ast.Attribute):
                    found.add(part.attr)
    return found


def test_no_module_outside_the_guard_iterates_the_sequence() -> None:
    """The guard runs a scheme's checks (fail-fast, or to the end for explain); nothing else
    walks them, so that a second scheme needs no second driver."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if module_name(path) in SEQUENCE_OWNERS:
            continue
        walked = iterated_names(ast.parse(path.read_text())) & _SEQUENCE_NAMES
        assert not walked, f"{module_name(path)} iterates {walked}"


def test_the_sequence_check_sees_a_loop_over_the_sequence() -> None:
    tree = ast.parse("for check in scheme.sequence: pass\n[c for c in SEQUENCE]")
    assert iterated_names(tree) >= {"sequence", "SEQUENCE"}


def test_a_scheme_module_registers_its_scheme_through_one_call() -> None:
    """Every module that declares a `Scheme` registers its one `Authorization` scheme with one
    `register_scheme` call (OAuth 2.0's grant, a `Scheme` its token endpoint runs, beside its
    Bearer), and no module but `core.scheme` writes the registry itself."""
    declaring = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        names = [getattr(call.func, "id", getattr(call.func, "attr", "")) for call in calls]
        if module_name(path) == "tba_guard.core.scheme":
            continue
        writes = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and getattr(node.value, "id", "") == "SCHEMES"
        ]
        assert not writes, f"{module_name(path)} writes SCHEMES"
        if "Scheme" in names:
            declaring += 1
            assert names.count("register_scheme") == 1, path
    assert declaring >= 1  # TBA's own, core/sequence.py
