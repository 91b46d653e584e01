"""`make test` writes nothing outside the project but pytest's own temporary folders. The tests
that did (the browser test: Chromium keeps crash reports and a dconf cache under HOME, whatever
its profile; the docs' examples, which users copy and which make folders of their own) run again
in a pytest of their own, with `HOME` and `TMPDIR` pointed at empty folders that must still be
empty when it ends.

Where Chromium is missing this test skips with the reason; `.ci/run` installs it and requires it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.environment import require_chromium

WATCHED_TESTS = [
    "tests/asgi/test_flow_browser.py",
    "tests/project/test_docs_snippets.py",
    "tests/project/test_docs_shell.py",
]


def left_in(folder: Path) -> list[str]:
    """What is in `folder`: its files and empty folders, relative to it."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_dir() or not any(path.iterdir()):
            found.append(str(path.relative_to(folder)))
    return found


def described(leftovers: list[str], limit: int = 15) -> str:
    shown = "\n  ".join(leftovers[:limit])
    more = f"\n  ... and {len(leftovers) - limit} more" if len(leftovers) > limit else ""
    return f"{len(leftovers)} left:\n  {shown}{more}"


@pytest.fixture
def watched() -> Iterator[Path]:
    """A folder with a short path: Chromium puts a Unix socket in TMPDIR, and a socket's path
    must fit in 108 bytes, which one under tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="tba-") as folder:
        yield Path(folder)


def test_the_browser_test_and_the_docs_examples_leave_nothing_in_home_or_the_temp_folder(
    watched: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require_chromium()
    home, temp, basetemp = watched / "home", watched / "tmp", tmp_path / "basetemp"
    home.mkdir()
    temp.mkdir()
    # Unset, the XDG folders default to inside HOME, where they are watched too. Chromium is
    # here (checked above), so the browser test must run, not skip.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    environment |= {"HOME": str(home), "TMPDIR": str(temp), "TBA_GUARD_REQUIRE_BROWSER": "1"}
    # The same build as this run: the environment (PYTHONSAFEPATH or PYTHONPATH, and
    # TBA_GUARD_BUILD, which test_build checks) is inherited, and so is the import mode.
    # pytest's own tmp_path goes to --basetemp, outside the watched folders.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [f"--import-mode={request.config.option.importmode}", f"--basetemp={basetemp}"]
    result = subprocess.run(
        [*command, *WATCHED_TESTS],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout[-3000:] + result.stderr[-3000:]
    left = {name: left_in(folder) for name, folder in (("HOME", home), ("TMPDIR", temp))}
    report = "\n".join(f"{name}: {described(paths)}" for name, paths in left.items() if paths)
    assert not report, f"{report}\n{output}"
    # A run that stopped short may not have written what a whole one would.
    assert result.returncode == 0, output
