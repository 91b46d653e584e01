"""Tests that need something of the machine (a command-line tool, a redis-server built with
TLS, Chromium) skip where it is missing, and fail instead where CI sets the flag saying it is
there: `TBA_GUARD_REQUIRE_TOOLS=1` (openssl, curl, bash), `TBA_GUARD_REQUIRE_REDIS_TLS=1`,
`TBA_GUARD_REQUIRE_BROWSER=1`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

TOOLS_FLAG = "TBA_GUARD_REQUIRE_TOOLS"
REDIS_TLS_FLAG = "TBA_GUARD_REQUIRE_REDIS_TLS"
BROWSER_FLAG = "TBA_GUARD_REQUIRE_BROWSER"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def missing(reason: str, flag: str) -> NoReturn:
    """Skip, or fail when `flag` is set to 1."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{reason} ({flag}=1)")
    pytest.skip(reason)


def require_tools(*names: str, why: str) -> None:
    """Skip (or fail, under TBA_GUARD_REQUIRE_TOOLS=1) unless every named command exists."""
    absent = [name for name in names if shutil.which(name) is None]
    if absent:
        missing(f"{' and '.join(absent)} not installed: {why}", TOOLS_FLAG)


def require_chromium() -> str:
    """Chromium's path; skip (or fail, under TBA_GUARD_REQUIRE_BROWSER=1) where it is missing."""
    if not Path(CHROMIUM).exists():
        missing("Chromium is not installed (Debian: apt-get install chromium)", BROWSER_FLAG)
    return CHROMIUM
