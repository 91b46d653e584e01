"""MkDocs hooks (mkdocs.yml `hooks:`): what the site shows from the source, never copied by hand.

- `<!-- error-catalog -->` in a page becomes the table of `tba_guard.core.errors.CATALOG`: code,
  HTTP status, `oauth_problem` and message, in the catalog's order.
- `<!-- check-sequence -->` becomes the table of `tba_guard.core.sequence.SEQUENCE`: the order
  of checks as the guard, the flow and `explain` run it; `<!-- check-sequence: bearer -->` and
  `<!-- check-sequence: client_credentials -->` OAuth 2.0's (`core/oauth2_sequence.py`).
- `<!-- settings: protocol -->` (or `request`, `replay`, `credentials`, `flow`) becomes the
  table of that concern's settings, from their declarations in `tba_guard.core.settings`:
  name, environment variable, default and meaning.
- The benchmark figures stay in `benchmarks/` (RESULTS.md, README.md and the charts); they are
  added to the site under `benchmark-results/` as they are, so the docs link them, not copy them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
CATALOG_MARKER = "<!-- error-catalog -->"
SEQUENCE_MARKER = re.compile(r"<!-- check-sequence(?:: (\w+))? -->")
SETTINGS_MARKER = re.compile(r"<!-- settings: (\w+) -->")
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


def check_sequence_table(name: str | None = None) -> str:
    """The Markdown table of a declared sequence (TBA's, or OAuth 2.0's `bearer` or
    `client_credentials`), one row per entry, in order."""
    from tba_guard.core.checks import Step
    from tba_guard.core.sequence import BODY, SEQUENCE

    body = BODY
    if name is not None:  # OAuth 2.0's: the grant reads its form first, a bearer no body
        from tba_guard.core.oauth2_sequence import BEARER_SEQUENCE, CLIENT_CREDENTIALS_SEQUENCE

        SEQUENCE = {"bearer": BEARER_SEQUENCE, "client_credentials": CLIENT_CREDENTIALS_SEQUENCE}[
            name
        ]
        body = 0 if name == "client_credentials" else -1

    step_names = {
        Step.RESOURCE: "resource",
        Step.REQUEST_TOKEN: "request token",
        Step.ACCESS_TOKEN: "access token",
    }
    rows = ["| # | check | refuses with | steps |", "|---|---|---|---|"]
    for index, check in enumerate(SEQUENCE):
        if index == body:
            rows.append("| | *the body is read here, when the signature covers it* | | |")
        steps = ", ".join(step_names[step] for step in Step if step in check.steps)
        function = getattr(check.run, "__name__", "")
        rows.append(f"| {check.number} | `{function}` | {check.name} | {steps} |")
    return "\n".join(rows) + "\n"


def settings_table(table: str) -> str:
    """The Markdown table of one concern's settings, in their declared order."""
    import dataclasses

    from tba_guard.core.settings import ENV_PREFIX, GROUPS

    (group,) = [group for group in GROUPS if group.table == table]
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for spec in dataclasses.fields(group):
        variable = ENV_PREFIX + spec.name.upper()
        doc = spec.metadata["doc"].replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{variable}` | {_default(spec.default)} | {doc} |")
    return "\n".join(rows) + "\n"


def _default(value: Any) -> str:
    """A default as the settings file spells it."""
    if value is None:
        return "not set"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def on_page_markdown(markdown: str, **_: Any) -> str:
    markdown = SETTINGS_MARKER.sub(lambda found: settings_table(found.group(1)), markdown)
    markdown = SEQUENCE_MARKER.sub(lambda found: check_sequence_table(found.group(1)), markdown)
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
