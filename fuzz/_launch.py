"""Arguments for libFuzzer, so a target runs the same from any directory and leaves no logs.

With -jobs/-workers libFuzzer writes fuzz-N.log into the working directory and restarts the
target through a shell from its argv[0]. So relative paths become absolute, argv[0] names this
interpreter and the script (no executable bit needed), and the working directory becomes
fuzz/logs/, which git ignores.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

LOGS = Path(__file__).resolve().parent / "logs"
PATH_FLAGS = ("-artifact_prefix=", "-exact_artifact_path=", "-dict=")


def _absolute(path: str) -> str:
    # A prefix such as `fuzz/artifacts/` keeps its slash: libFuzzer appends the file name.
    return os.path.abspath(path) + ("/" if path.endswith("/") else "")


def fuzzer_argv(argv: list[str]) -> list[str]:
    """`argv` with paths made absolute; then the working directory moves to fuzz/logs/."""
    command = " ".join(shlex.quote(part) for part in (sys.executable, _absolute(argv[0])))
    result = [command]
    for arg in argv[1:]:
        flag = next((f for f in PATH_FLAGS if arg.startswith(f)), None)
        if flag is not None:
            result.append(flag + _absolute(arg[len(flag) :]))
        elif arg.startswith("-"):
            result.append(arg)
        else:  # a corpus directory or an input to replay
            result.append(_absolute(arg))
    LOGS.mkdir(exist_ok=True)
    os.chdir(LOGS)
    return result
