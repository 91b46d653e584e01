"""MkDocs hooks (mkdocs.yml `hooks:`): what the site shows from the source, never copied by hand.

- `<!-- error-catalog -->` in a page becomes the table of `tba_guard.core.errors.CATALOG`: code,
  HTTP status, `oauth_problem` and message, in the catalog's order.
- `<!-- check-sequence -->` becomes the table of `tba_guard.core.sequence.SEQUENCE`: the order
  of checks as the guard, the flow and `explain` run it.
- The benchmark figures stay in `benchmarks/` (RESULTS.md, README.md and the charts); they are
  added to the site under `benchmark-results/` as they are, so the docs link them, not copy them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
CATALOG_MARKER = "<!-- error-catalog -->"
SEQUENCE_MARKER = "<!-- check-sequence -->"
BENCHMARK_FILES = ("RESULTS.md", "README.md", "scaling.png", "http.png")


def error_catalog_table() -> str:
    """The Markdown table of every code in `tba_guard.core.errors.CATALOG`."""
    from tba_guard.core.errors import CATALOG

    rows = [
        "| code | HTTP | `oauth_problem` | message |",
        "|---|---|---|---|",
    ]
    for code, entry in CATALOG.items():
        message = entry.message.replace("|", "\\|")
        rows.append(f"| `{code.value}` | {entry.status} | `{entry.problem}` | {message} |")
    return "\n".join(rows) + "\n"


def check_sequence_table() -> str:
    """The Markdown table of the declared sequence, one row per entry, in order."""
    from tba_guard.core.checks import Step
    from tba_guard.core.sequence import BODY, SEQUENCE

    step_names = {
        Step.RESOURCE: "resource",
        Step.REQUEST_TOKEN: "request token",
        Step.ACCESS_TOKEN: "access token",
    }
    rows = ["| # | check | refuses with | steps |", "|---|---|---|---|"]
    for index, check in enumerate(SEQUENCE):
        if index == BODY:
            rows.append("| | *the body is read here, when the signature covers it* | | |")
        steps = ", ".join(step_names[step] for step in Step if step in check.steps)
        function = getattr(check.run, "__name__", "")
        rows.append(f"| {check.number} | `{function}` | {check.name} | {steps} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if SEQUENCE_MARKER in markdown:
        markdown = markdown.replace(SEQUENCE_MARKER, check_sequence_table())
    if CATALOG_MARKER in markdown:
        markdown = markdown.replace(CATALOG_MARKER, error_catalog_table())
    return markdown


def on_files(files: Files, config: Any, **_: Any) -> Files:
    for name in BENCHMARK_FILES:
        path = ROOT / "benchmarks" / name
        if path.exists():
            files.append(
                File.generated(config, f"benchmark-results/{name}", abs_src_path=str(path))
            )
    return files
