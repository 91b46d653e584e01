"""MkDocs hooks (mkdocs.yml `hooks:`): what the site shows from the source, never copied by hand.

- `<!-- error-catalog -->` in a page becomes the table of `tba_guard.core.errors.CATALOG`: code,
  HTTP status, `oauth_problem` and message, in the catalog's order.
- The benchmark figures stay in `benchmarks/` (RESULTS.md, README.md and the charts); they are
  added to the site under `benchmark-results/` as they are, so the docs link them, not copy them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
CATALOG_MARKER = "<!-- error-catalog -->"
TESTING_MARKER = "<!-- api: tba_guard.tools.testing -->"
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


def on_page_markdown(markdown: str, **_: Any) -> str:
    if CATALOG_MARKER in markdown:
        markdown = markdown.replace(CATALOG_MARKER, error_catalog_table())
    # A module documented only once it exists (tba_guard.tools.testing is written alongside).
    if TESTING_MARKER in markdown:
        section = "## Testing helpers\n\n::: tba_guard.tools.testing\n"
        exists = (ROOT / "tba_guard" / "tools" / "testing.py").exists()
        markdown = markdown.replace(TESTING_MARKER, section if exists else "")
    return markdown


def on_files(files: Files, config: Any, **_: Any) -> Files:
    for name in BENCHMARK_FILES:
        path = ROOT / "benchmarks" / name
        if path.exists():
            files.append(
                File.generated(config, f"benchmark-results/{name}", abs_src_path=str(path))
            )
    return files
