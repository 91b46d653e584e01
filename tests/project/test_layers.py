"""The package's layers, and imports that run one way: core, stores, guard, ASGI, tools.

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
LAYERS = ("core", "stores", "guard", "asgi", "tools", "")


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
    assert folders == ["asgi", "core", "stores", "tools"]
    assert (PACKAGE / "guard.py").exists()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_and_those_below(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if layer_of(m) > layer_of(module))
    assert not upward, f"{module} imports a higher layer: {upward}"


def test_the_core_imports_nothing_outside_the_core() -> None:
    for module, imported in GRAPH.items():
        if module.startswith("tba_guard.core"):
            assert all(m.startswith("tba_guard.core") for m in imported), (module, imported)


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
    """`explain` and the mistake search are loaded for development hints only, lazily."""
    for module in ("tba_guard.asgi.middleware", "tba_guard.guard", "tba_guard.core.checks"):
        tree = ast.parse((PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text())
        top_level = {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
        assert not any("hints" in m or "mistakes" in m or "explain" in m for m in top_level)
