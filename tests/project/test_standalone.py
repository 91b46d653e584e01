"""The repository stands alone: a copy in an unrelated folder collects every test.

The copy holds exactly the files git tracks, as they are in the working tree, so a test that
reads a file outside the repository (or one that is not committed) fails here first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to copy")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in listing.split("\0") if name and (ROOT / name).is_file()]


def test_no_tracked_file_refers_outside_the_repository() -> None:
    outside = ("../" + "shared", "parents[" + "2]")  # split, or this file would match
    offenders = [
        name
        for name in tracked_files()
        if any(text in (ROOT / name).read_text(errors="replace") for text in outside)
    ]
    assert offenders == []


def test_a_copy_in_an_unrelated_folder_collects_every_test() -> None:
    with tempfile.TemporaryDirectory(prefix="tba-guard-clone-") as folder:
        clone = Path(folder) / "clone"
        # Its parent is a fresh folder: nothing beside the copy, as in a user's own clone.
        assert clone.parent != ROOT.parent
        assert not (clone.parent / "shared").exists()
        for name in tracked_files():
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
        env = {**os.environ, "PYTHONPATH": str(clone)}
        env.pop("PYTHONSAFEPATH", None)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert " tests collected in " in last, last
    collected = int(last.split()[0])
    assert collected > 500
