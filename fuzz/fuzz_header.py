#!/usr/bin/env python3
"""Coverage-guided fuzzing of the Authorization header parser (atheris / libFuzzer).

Any input must either parse into at most `max_parameters` parameters or be refused with
`MissingRequiredParameter`; anything else (another exception, a hang) is a finding.

    python fuzz/fuzz_header.py -max_total_time=60 CORPUS_DIR   # docs/fuzzing.md
"""

from __future__ import annotations

import sys

import atheris
from _launch import fuzzer_argv

with atheris.instrument_imports(include=["tba_guard"]):
    from tba_guard.core.errors import ErrorCode, TBAError
    from tba_guard.core.header import parse_authorization

MAX_PARAMETERS = 32


def parse(value: str) -> dict[str, str] | TBAError:
    try:
        return parse_authorization(value, max_parameters=MAX_PARAMETERS)
    except TBAError as error:
        return error


def test_one_input(data: bytes) -> None:
    # An ASGI server hands header values over as bytes; the middleware decodes them as latin-1.
    value = data.decode("latin-1")
    parsed = parse(value)
    if isinstance(parsed, TBAError):
        assert parsed.code is ErrorCode.MISSING_REQUIRED_PARAMETER, parsed.code
        assert parsed.status == 400
        return
    assert len(parsed) <= MAX_PARAMETERS
    assert value.lstrip(" \t")[:5].lower() == "oauth"
    for name, decoded in parsed.items():
        assert "\x00" not in name + decoded


def main() -> None:
    atheris.Setup(fuzzer_argv(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
