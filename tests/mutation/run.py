"""`make mutate`: mutmut over the core, in a copy of the work tree, then the score per module.

The copy keeps mutmut's `mutants/` folder (and any mutant it writes) away from the tree being
worked in. The files mutated are the core, whose one list setup.py reads from pyproject.toml: this
script writes them into the copy's `[tool.mutmut]` as `only_mutate`; the rest of that table (which
tests run) is the work tree's.
A surviving mutant is a test missing, or a change nothing can observe: those are listed, with the
reason, in EQUIVALENT.md beside this file. Exit status 1 when a survivor is not listed there.

    python tests/mutation/run.py [--minutes M] [--sample N] [--keep DIR] [--report-only DIR]
                                 [glob ...]

A full run of the core (about 4,000 mutants at roughly 3 s each on two cores) does not fit in
the hour: `--sample N` runs N mutants per module, spread evenly over each module's mutants (the
same ones on every run of the same source), and the report says it is a sample.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from runpy import run_path

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository
EQUIVALENT = Path(__file__).resolve().parent / "EQUIVALENT.md"
# mutmut's exit codes in `mutants/**/*.meta`: 0 survived, 33 no test reaches the mutant,
# 34 skipped, 36 and -24 (SIGXCPU) timed out; any other code means a test failed (killed).
SURVIVED, NO_TESTS, SKIPPED, TIMEOUTS = 0, 33, 34, {36, -24, 24}
SAMPLE_FILE = "mutants/sample.txt"  # in the copy: the names a `--sample` run chose
LISTED = re.compile(r"^- `([\w.]+__mutmut_\d+)`", re.MULTILINE)


def tracked_files() -> list[str]:
    """The files of the work tree as git sees them (new files included, ignored ones not)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def copy_tree(target: Path) -> None:
    for name in tracked_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def core() -> list[str]:
    """The core's files: setup.py reads them from `[tool.coverage.run] include`."""
    files: list[str] = run_path(str(ROOT / "setup.py"), run_name="tba_guard_setup")["core"]()
    return files


def with_core(pyproject: str, files: list[str]) -> str:
    """pyproject.toml's text with `files` as `[tool.mutmut] only_mutate` (a JSON list of strings
    is a TOML array)."""
    table = "\n[tool.mutmut]\n"
    if table not in pyproject or "only_mutate" in tomllib.loads(pyproject)["tool"]["mutmut"]:
        raise SystemExit("pyproject.toml: expected a [tool.mutmut] table without only_mutate")
    return pyproject.replace(table, f"{table}only_mutate = {json.dumps(files)}\n", 1)


def run_mutmut(copy: Path, names: list[str], minutes: float) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The copy's source, as plain Python: mutmut puts its mutants/ first on the path.
    env["TBA_GUARD_BUILD"] = "pure"
    command = [
        sys.executable,
        "-m",
        "mutmut",
        "run",
        "--max-children",
        str(os.cpu_count() or 2),
        *names,
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.DEVNULL)
    try:
        code = process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        # Bounded: mutmut records each result as it comes, so the report covers what ran.
        process.send_signal(signal.SIGINT)
        process.wait()
        code = 0
        print(f"stopped after {minutes:g} minutes", file=sys.stderr)
    print(f"mutmut ran {time.monotonic() - started:.0f} s in {copy}", file=sys.stderr)
    return code


def generate(copy: Path) -> None:
    """Have mutmut write every mutant and record which tests reach each function, running
    only the few mutants of the smallest module (mutmut has no generate-only command)."""
    run_mutmut(copy, ["tba_guard.core.protocols*"], 30.0)


def sample(codes: dict[str, int | None], per_module: int) -> list[str]:
    """Up to `per_module` mutants of each module, evenly spaced in mutmut's order."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in sorted(codes, key=_natural):
        by_module[module_of(name)].append(name)
    chosen: list[str] = []
    for names in by_module.values():
        step = max(len(names) / per_module, 1.0)
        chosen += [names[int(i * step)] for i in range(min(per_module, len(names)))]
    return chosen


def _natural(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number)


def results(copy: Path) -> dict[str, int | None]:
    """Every mutant's exit code, by mutmut's name for it (None: not run)."""
    codes: dict[str, int | None] = {}
    for meta in sorted((copy / "mutants").glob("tba_guard/**/*.meta")):
        data = json.loads(meta.read_text())
        codes.update(data.get("exit_code_by_key", {}))
    return codes


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def sampled(copy: Path) -> set[str] | None:
    path = copy / SAMPLE_FILE
    return set(path.read_text().split()) if path.exists() else None


def listed_equivalent() -> set[str]:
    return set(LISTED.findall(EQUIVALENT.read_text())) if EQUIVALENT.exists() else set()


def report(codes: dict[str, int | None], only: set[str] | None = None) -> int:
    generated = set(codes)
    if only is not None:  # a sample: the mutants outside it are not part of the score
        codes = {name: code for name, code in codes.items() if name in only}
        print(f"A sample: {len(codes)} mutants, listed in {SAMPLE_FILE} of the copy.")
    equivalent = listed_equivalent()
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    unlisted: list[str] = []
    for name, code in codes.items():
        counts = tally[module_of(name)]
        counts["mutants"] += 1
        if code is None or code == SKIPPED:
            counts["not run"] += 1
        elif name in equivalent and code in (SURVIVED, NO_TESTS):
            counts["equivalent"] += 1
        elif code in (SURVIVED, NO_TESTS):
            counts["survived" if code == SURVIVED else "no test"] += 1
            unlisted.append(name)
        elif code in TIMEOUTS:
            counts["timeout"] += 1  # an endless loop the tests notice by waiting: killed
        else:
            counts["killed"] += 1
    header = ("module", "mutants", "not run", "killed", "timeout", "survived", "no test")
    print("{:<34} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} equivalent  score".format(*header))
    for module in sorted(tally):
        c = tally[module]
        killed = c["killed"] + c["timeout"]
        judged = killed + c["survived"] + c["no test"]
        score = f"{100 * killed / judged:.1f} %" if judged else "-"
        print(
            f"{module:<34} {c['mutants']:>7} {c['not run']:>7} {c['killed']:>7} "
            f"{c['timeout']:>7} {c['survived']:>8} {c['no test']:>7} {c['equivalent']:>10}  {score}"
        )
    stale = sorted(equivalent - generated)
    if stale:
        print(
            f"\n{len(stale)} listed in EQUIVALENT.md but no longer generated:", *stale, sep="\n  "
        )
    if unlisted:
        print(
            f"\n{len(unlisted)} surviving mutants not in EQUIVALENT.md:",
            *sorted(unlisted),
            sep="\n  ",
        )
        print("See one with: mutmut show NAME (in the copy above)")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    parser.add_argument("--report-only", type=Path, help="only report a finished run's folder")
    parser.add_argument("--minutes", type=float, default=55.0, help="stop mutmut after this")
    parser.add_argument("--sample", type=int, help="only this many mutants per module")
    parser.add_argument("names", nargs="*", help="only these mutants (mutmut's globs)")
    args = parser.parse_args()
    if args.report_only:
        return report(results(args.report_only), sampled(args.report_only))
    copy = args.keep or Path(tempfile.mkdtemp(prefix="tba-guard-mutate-"))
    copy_tree(copy)
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(with_core(pyproject.read_text(), core()))
    names = args.names
    if args.sample:
        started = time.monotonic()
        generate(copy)
        names = sample(results(copy), args.sample)
        (copy / SAMPLE_FILE).write_text("\n".join(names) + "\n")
        args.minutes -= (time.monotonic() - started) / 60
    code = run_mutmut(copy, names, args.minutes)
    if code not in (0, 1):
        print(f"mutmut exited with {code}", file=sys.stderr)
        return code
    status = report(results(copy), sampled(copy))
    if args.keep is None and status == 0:
        shutil.rmtree(copy)
    return status


if __name__ == "__main__":
    sys.exit(main())
