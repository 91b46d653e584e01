"""The suite tests the build it says it tests.

`make test` runs the suite twice and names the build in `TBA_GUARD_BUILD`: `compiled` (the
installed package, its hot path compiled by mypyc and `core/_speedups.c` built) and `pure` (the
source tree, with neither).
"""

from __future__ import annotations

import importlib
import os

from tests.support import ROOT

HOT_PATH = (
    "core/errors",
    "core/header",
    "core/request",
    "core/signature",
    "core/records",
    "core/protocols",
    "core/audit",
    "core/checks",
    "core/sequence",
    "guard",
    "stores/memory",
    "asgi/middleware",
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


def test_the_setup_script_compiles_exactly_the_hot_path() -> None:
    """setup.py and this test name the same modules: a module added to one is added to both."""

    setup = (ROOT / "setup.py").read_text()
    for module in HOT_PATH:
        assert f'"tba_guard/{module}.py"' in setup
    assert setup.count('.py"') == len(HOT_PATH)
