"""The core is listed once, as `[tool.coverage.run] include` in pyproject.toml, and whatever
names the core reads that list: coverage (its own table), setup.py (mypyc compiles the core but
for setup.py's INTERPRETED), tests/mutation/run.py (mutmut mutates the core) and the sentence of
docs/testing.md that says what the core is. A consumer that drifts from the list fails here."""

from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import ROOT

PYPROJECT = ROOT / "pyproject.toml"


def load(path: Path, name: str) -> ModuleType:
    """A script as a module, without running its `__main__` part (setup.py's `setup()`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def setup_script() -> ModuleType:
    return load(ROOT / "setup.py", "tba_guard_setup")


def the_list() -> list[str]:
    patterns: list[str] = tomllib.loads(PYPROJECT.read_text())["tool"]["coverage"]["run"]["include"]
    return patterns


def package_files() -> list[str]:
    return sorted(path.relative_to(ROOT).as_posix() for path in ROOT.glob("tba_guard/**/*.py"))


def test_setup_reads_the_files_coverage_measures() -> None:
    """setup.py expands the list's globs as coverage does: the same files, each listed once."""
    from coverage.files import GlobMatcher, prep_patterns

    files = setup_script().core()
    assert len(files) == len(set(files))
    included = GlobMatcher(prep_patterns(the_list()), "include")
    measured = [name for name in package_files() if included.match(str(ROOT / name))]
    assert sorted(files) == measured
    for pattern in the_list():  # a pattern that matches nothing is a module renamed or gone
        assert list(ROOT.glob(pattern)), pattern


def test_mypyc_compiles_the_core_but_for_the_interpreted(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = setup_script()
    core = setup.core()
    for pattern in setup.INTERPRETED:  # an exception for a file no longer in the core is stale
        assert any(fnmatch(name, pattern) for name in core), pattern
    hot_path = setup.hot_path()
    assert hot_path
    assert set(hot_path) < set(core)

    compiled: list[str] = []

    def mypycify(arguments: list[str], **_: Any) -> list[object]:
        compiled.extend(argument for argument in arguments if not argument.startswith("-"))
        return []

    monkeypatch.setitem(sys.modules, "mypyc.build", ModuleType("mypyc.build"))
    monkeypatch.setattr(sys.modules["mypyc.build"], "mypycify", mypycify, raising=False)
    monkeypatch.setattr(setup, "c_compiler_found", lambda: True)
    monkeypatch.delenv("TBA_GUARD_PURE_PYTHON", raising=False)
    monkeypatch.setattr(sys, "argv", ["setup.py", "bdist_wheel"])
    setup.compiled_extensions()
    assert compiled == hot_path


def test_mutmut_mutates_the_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py writes the list into its copy's `[tool.mutmut]`; mutmut, reading that table, would
    mutate exactly the core (and pyproject.toml keeps no only_mutate of its own to drift)."""
    configuration = pytest.importorskip("mutmut.configuration")
    run = load(ROOT / "tests" / "mutation" / "run.py", "tba_guard_mutation_run")
    text = PYPROJECT.read_text()
    assert "only_mutate" not in tomllib.loads(text)["tool"]["mutmut"]
    core = setup_script().core()
    assert run.core() == core
    copied = run.with_core(text, core)
    assert tomllib.loads(copied)["tool"]["mutmut"]["only_mutate"] == core
    (tmp_path / "pyproject.toml").write_text(copied)
    monkeypatch.chdir(tmp_path)
    config = configuration._load_config()
    assert [name for name in package_files() if config.should_mutate(name)] == sorted(core)


def test_the_docs_name_the_core() -> None:
    """docs/testing.md's sentence on the core names every entry of the list."""
    testing = (ROOT / "docs" / "testing.md").read_text()
    paragraph = testing[testing.index("**Branch coverage of the core.**") :].split("\n\n")[0]
    paragraph = " ".join(paragraph.split())
    for pattern in the_list():
        short = pattern.removeprefix("tba_guard/")
        if short.startswith("core/"):
            assert os.path.splitext(short.removeprefix("core/"))[0] in paragraph, pattern
        else:
            assert f"`{short}`" in paragraph, pattern
