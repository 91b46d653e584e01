"""Every code example of the README and the documentation site runs as written.

Each ```python block of README.md and docs/*.md is run as a script of its own, in a fresh
interpreter (the suite's, with its environment less the `TBA_GUARD_*` variables) and an empty
temporary directory. A block that
needs a running server or a service the suite cannot start (a browser, a Redis Cluster) is marked
on the line before its fence with `<!-- fragment: why -->`: it is only compiled. A block that
needs an optional package the project does not depend on is marked `<!-- requires: module -->`
and is skipped, with that reason, where the module is not installed. ```toml blocks are parsed,
and every key they use is one `GuardSettings.from_toml` knows.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tba_guard import GuardSettings, Integration, Token, User
from tba_guard.core.records import Brownout, Certificate
from tba_guard.core.settings import GROUPS, SECRET_SETTINGS
from tests.support import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>fragment|requires)\s*:\s*(?P<value>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    code: str
    fragment: str | None  # the reason it is only compiled
    requires: str | None  # an optional module it needs

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening or not opening["lang"]:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not FENCE.match(lines[index]):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        found.append(
            Block(
                document=str(path.relative_to(ROOT)),
                line=start + 1,
                language=opening["lang"],
                code=textwrap.dedent("\n".join(body)) + "\n",
                fragment=marker["value"] if marker and marker["kind"] == "fragment" else None,
                requires=marker["value"] if marker and marker["kind"] == "requires" else None,
            )
        )
    return found


ALL_BLOCKS = [block for document in DOCUMENTS for block in blocks_of(document)]
PYTHON = [block for block in ALL_BLOCKS if block.language == "python"]
RUNNABLE = [block for block in PYTHON if block.fragment is None]
FRAGMENTS = [block for block in PYTHON if block.fragment is not None]
TOML = [block for block in ALL_BLOCKS if block.language == "toml"]


def test_the_documents_hold_python_examples_to_run() -> None:
    assert len(RUNNABLE) >= 10, [block.name for block in RUNNABLE]
    assert any(block.document == "README.md" for block in RUNNABLE)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.name)
def test_python_example_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.requires and importlib.util.find_spec(block.requires) is None:
        reason = f"{block.name} needs {block.requires}, which is not installed here"
        if os.environ.get("TBA_GUARD_REQUIRE_DOCS") == "1":
            pytest.fail(f"{reason} (TBA_GUARD_REQUIRE_DOCS=1)")
        pytest.skip(reason)
    # As a user runs it: none of the suite's TBA_GUARD_* switches (from_env would refuse them).
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TBA_GUARD_")}
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda block: block.name)
def test_fragment_compiles_and_says_why_it_is_not_run(block: Block) -> None:
    assert len(block.fragment or "") >= 10, f"{block.name}: say why it is a fragment"
    compile(block.code, block.name, "exec")


def _known(cls: type) -> set[str]:
    """A class's fields, and for a secret setting its `<name>_file` (read from a file)."""
    names = {field.name for field in dataclasses.fields(cls)}
    return names | {f"{name}_file" for name in names & SECRET_SETTINGS}


@pytest.mark.parametrize("block", TOML, ids=lambda block: block.name)
def test_toml_example_uses_only_known_settings(block: Block) -> None:
    document = tomllib.loads(block.code)
    tables = {
        "integrations": Integration,
        "tokens": Token,
        "users": User,
        "certificates": Certificate,
        "brownouts": Brownout,
    }
    concerns = {group.table: group for group in GROUPS}
    for section, content in document.items():
        if section == "guard":
            unknown = set(content) - _known(GuardSettings)
            assert not unknown, f"{block.name}: unknown [guard] keys {unknown}"
        elif section in concerns:
            unknown = set(content) - _known(concerns[section])
            assert not unknown, f"{block.name}: keys {unknown} are not of [{section}]"
        else:
            assert section in tables, f"{block.name}: unknown section {section!r}"
            for table in content:
                unknown = set(table) - _known(tables[section])
                assert not unknown, f"{block.name}: unknown [[{section}]] keys {unknown}"


def test_readme_is_short_and_its_first_example_needs_no_settings_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 190
    first = next(block for block in PYTHON if block.document == "README.md")
    assert first.fragment is None
    assert "from_toml" not in first.code
    assert "tba.toml" not in first.code


def test_readme_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme
