"""Builds the hot path with mypyc: the same typed modules, compiled to C extensions.

Why: every request crosses header parsing, the base string and the checks, and in pure Python
the interpreter's call and attribute overhead costs more than the HMAC itself. mypyc (part of
mypy) compiles these modules unchanged, so there is no second implementation to keep in step;
`tests/core/test_signature_differential.py` runs against whichever build is installed.

Two steps are also written in C by hand, `tba_guard/core/_speedups.c`: the header's parameter list
and the base string's normalized parameters, where even compiled Python spends most of its time
making and joining small strings. Their Python versions stay the reference, which the pure build
runs and `tests/core/test_speedups_differential.py` holds the C equal to, beside oauthlib.

Pure Python instead: an editable install (`pip install -e`, so that edits take effect at once),
or `TBA_GUARD_PURE_PYTHON=1`, or a machine without a C compiler (the build falls back).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent

# The core is listed once, as coverage's `[tool.coverage.run] include` in pyproject.toml (coverage
# reads only its own table): this build compiles it, but for INTERPRETED, and
# tests/mutation/run.py mutates it. tests/project/test_core_list.py holds them to it.
INTERPRETED = (
    "tba_guard/stores/__init__.py",  # store selection, run once at start
    "tba_guard/stores/redis*.py",  # a network round trip a call: compiling would gain nothing
    "tba_guard/asgi/receiving.py",  # `yield from` written out, which mypyc need not know about
)


def core() -> list[str]:
    """The core's files, in the order of the list (a glob's in name order), as paths from here."""
    with open(HERE / "pyproject.toml", "rb") as file:
        patterns: list[str] = tomllib.load(file)["tool"]["coverage"]["run"]["include"]
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(path.relative_to(HERE).as_posix() for path in HERE.glob(pattern))
        if not matched:
            raise SystemExit(f"setup.py: the core lists {pattern}, which matches no file")
        files += [name for name in matched if name not in files]
    return files


def hot_path() -> list[str]:
    """What mypyc compiles: the core but for INTERPRETED."""
    return [name for name in core() if not any(fnmatch(name, p) for p in INTERPRETED)]


SPEEDUPS = "tba_guard.core._speedups"
SPEEDUPS_SOURCE = "tba_guard/core/_speedups.c"


# The compiled modules share one library and reach each other's functions through a capsule, so
# nothing in it needs exporting but the modules' init functions. Hidden, its calls between its own
# functions are direct (and inlinable) rather than through the PLT, and with -fno-plt so are its
# calls into libpython: fewer instructions and instruction-cache lines a request. ELF only.
LOCAL_CALLS = ["-fvisibility=hidden", "-fno-plt"] if sys.platform.startswith("linux") else []


def c_compiler_found() -> bool:
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(compiler.split()[0]) is not None


def compiled_extensions() -> list[object]:
    if os.environ.get("TBA_GUARD_PURE_PYTHON") == "1" or "editable_wheel" in sys.argv:
        return []
    if not c_compiler_found():
        print("tba_guard: no C compiler found, installing as pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    # Imports outside the hot path (redis, SQLAlchemy) need not be installed to build it, and
    # the modules it imports but does not compile are type-checked by `make lint`, not here.
    compiled = mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *hot_path()], opt_level="3"
    )
    for extension in compiled:
        extension.extra_compile_args = [*extension.extra_compile_args, *LOCAL_CALLS]
    speedups = Extension(SPEEDUPS, [SPEEDUPS_SOURCE], extra_compile_args=["-O3", *LOCAL_CALLS])
    return [*compiled, speedups]


# setuptools runs this file as __main__; tests/project/test_core_list.py imports it for hot_path().
if __name__ == "__main__":
    setup(ext_modules=compiled_extensions())
