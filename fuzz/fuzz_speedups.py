#!/usr/bin/env python3
"""Differential fuzzing of the C in `tba_guard/core/_speedups.c` against its Python references.

The C module is loaded from the file named in TBA_GUARD_SPEEDUPS. `fuzz/run` fuzzes a plain
build, steered by the instrumented Python references' coverage (gcc gives libFuzzer none of the
C), then replays every input it kept against a build with AddressSanitizer and
UndefinedBehaviorSanitizer. An answer that differs from the Python's fails, as does, in the
replay, an access out of bounds, a use after free or undefined behaviour.

    fuzz/run [SECONDS]   # builds both and runs this with the other targets (docs/fuzzing.md)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import atheris
from _launch import fuzzer_argv

with atheris.instrument_imports(include=["tba_guard"]):
    from tba_guard.core import _native, header
    from tba_guard.core.errors import TBAError

NAME = "tba_guard.core._speedups"


def load_speedups(path: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(NAME, path)
    spec = importlib.util.spec_from_loader(NAME, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


SPEEDUPS = load_speedups(os.environ["TBA_GUARD_SPEEDUPS"])


def outcome(function: object, *args: object) -> object:
    try:
        return function(*args)  # type: ignore[operator]
    except UnicodeEncodeError:
        return UnicodeEncodeError


def check_header(rest: str) -> None:
    quick = SPEEDUPS.header_parameters(rest)
    if quick is None:
        return
    try:
        full = header._parameters_by_grammar(rest, 10_000)
    except TBAError as error:
        raise AssertionError(f"C accepted {rest!r}, Python refused it: {error}") from None
    assert quick == full, (rest, quick, full)
    assert list(quick) == list(full), (rest, quick, full)


def check_normalized(provider: atheris.FuzzedDataProvider) -> None:
    oauth: dict[str, str] = {}
    params: list[tuple[str, str]] = []
    for _ in range(provider.ConsumeIntInRange(0, 40)):
        name = provider.PickValueInList(["realm", "oauth_signature", "oauth_body_hash", ""])
        if provider.ConsumeBool():
            name = provider.ConsumeUnicode(provider.ConsumeIntInRange(0, 12))
        value = provider.ConsumeUnicode(provider.ConsumeIntInRange(0, 40))
        if provider.ConsumeBool():
            oauth[name] = value
        else:
            params.append((name, value))
    quick = outcome(SPEEDUPS.normalized_for_base_string, oauth, params)
    reference = outcome(_native.normalized_for_base_string, oauth, params)
    assert quick == reference, (oauth, params, quick, reference)


def test_one_input(data: bytes) -> None:
    if data[:1] == b"h":
        # An ASGI server hands header values over as bytes; the middleware decodes them as latin-1.
        check_header(data[1:].decode("latin-1"))
    else:
        check_normalized(atheris.FuzzedDataProvider(data))


def main() -> None:
    atheris.Setup(fuzzer_argv(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
