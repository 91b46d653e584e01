"""The suite tests the build it says it tests.

`make test` runs the suite twice and names the build in `TBA_GUARD_BUILD`: `compiled` (the
installed package, its hot path compiled by mypyc and `core/_speedups.c` built) and `pure` (the
source tree, with neither).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from tests.project.test_core_list import setup_script

# What setup.py compiles (the core but for its INTERPRETED), as "core/errors" and the like.
HOT_PATH = tuple(
    name.removeprefix("tba_guard/").removesuffix(".py") for name in setup_script().hot_path()
)


def build_of(module: str) -> str:
    path = importlib.import_module("tba_guard." + module.replace("/", ".")).__file__ or ""
    return "pure" if path.endswith(".py") else "compiled"


def speedups_build() -> str:
    try:
        importlib.import_module("tba_guard.core._speedups")
    except ImportError:
        return "pure"
    return "compiled"


def test_the_hot_path_is_wholly_one_build_and_the_one_named() -> None:
    builds = {module: build_of(module) for module in HOT_PATH}
    builds["core/_speedups"] = speedups_build()
    assert len(set(builds.values())) == 1, f"a mixed build: {builds}"
    named = os.environ.get("TBA_GUARD_BUILD")
    if named is not None:
        assert set(builds.values()) == {named}


def exported_functions(library: str) -> set[str]:
    listing = subprocess.run(
        ["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=True
    ).stdout
    return {fields[2] for fields in map(str.split, listing.splitlines()) if fields[1] == "T"}


@pytest.mark.skipif(
    build_of("guard") == "pure" or not sys.platform.startswith("linux"),
    reason="the compiled build's linkage, as setup.py sets it on Linux",
)
def test_the_compiled_libraries_export_only_their_init_functions() -> None:
    """Hidden symbols make the compiled code's calls to itself direct, not through the PLT."""
    shared = next(
        module
        for name, module in sys.modules.items()
        if name.endswith("__mypyc") and hasattr(module, "init_tba_guard___guard")
    )
    speedups = importlib.import_module("tba_guard.core._speedups")
    for module in (shared, speedups):
        assert module.__file__ is not None
        exported = exported_functions(module.__file__)
        assert exported, module.__file__  # nm read it: an empty set would prove nothing
        assert all(name.startswith("PyInit_") for name in exported), sorted(exported)[:5]
