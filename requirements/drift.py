"""Which installed releases differ from the lock: run by `make test-latest`, before the suite
(what it tests beyond the lock) and after a failure (the upstream releases to suspect)."""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    return {canonical(name): version for name, version in _PIN.findall(lock.read_text())}


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in distributions()}


def main(argv: list[str]) -> int:
    failed = "--failed" in argv
    lock = Path(next(arg for arg in argv if not arg.startswith("--")))
    locked, installed = locked_versions(lock), installed_versions()
    drift = sorted(
        (name, installed[name], version)
        for name, version in locked.items()
        if name in installed and installed[name] != version
    )
    if failed:
        print("\nmake test-latest failed. Releases newer than the lock, to suspect first:")
    else:
        print(f"Testing {len(drift)} releases that differ from {lock}:")
    for name, now, was in drift:
        print(f"  {name} {now} (locked {was})")
    if not drift:
        print("  none: the lock holds the newest releases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
