"""`tba-guard explain` from Python: every check on a request, and a bad signature's cause."""

from __future__ import annotations

from .diagnosis.hints import development_hint
from .tools.explain import RawRequest, parse_raw_request, run_explain, run_explain_raw

__all__ = ["RawRequest", "development_hint", "parse_raw_request", "run_explain", "run_explain_raw"]
