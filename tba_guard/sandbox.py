"""The `netsuite_sandbox` pytest fixture (docs/sandbox.md): a NetSuite-like account for a client
library's tests, started once per session. Loaded by the `pytest11` entry point, or
`pytest -p tba_guard.sandbox`."""

from __future__ import annotations
