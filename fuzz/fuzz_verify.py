#!/usr/bin/env python3
"""Coverage-guided fuzzing of the whole verification: `Guard.verify` with a fixed clock.

The fuzzer picks the method, path, query, body, content type, settings mode and the header:
either raw bytes, or parameters it chooses assembled into a header and signed with the right
secrets (so that the deep checks and the accepted path are reached too). Every input must end
in an `Identity` or a `TBAError` whose code is in the catalog and whose status is below 500,
except the stores' 503; a raw, unsigned header must never be accepted.

    python fuzz/fuzz_verify.py -max_total_time=60 CORPUS_DIR   # docs/fuzzing.md
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

import atheris
from _launch import fuzzer_argv

with atheris.instrument_imports(include=["tba_guard"]):
    from tba_guard import Guard, GuardSettings, Identity, Integration, TBAError, Token
    from tba_guard.core.errors import CATALOG, error_response
    from tba_guard.core.request import OAuthRequest, form_pairs, request_from_url
    from tba_guard.core.signature import SIGNATURE_METHODS, base_string, sign
    from tba_guard.stores.memory import MemoryReplayStore

NOW = 1_700_000_000
HOST = "https://123456-sb1.restlets.example.com"
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
METHODS = ["GET", "POST", "PUT", "DELETE", "get", ""]
CONTENT_TYPES = [None, "application/x-www-form-urlencoded", "application/json", "text/plain"]
NAMES = [
    "oauth_consumer_key",
    "oauth_token",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_signature_method",
    "oauth_version",
    "oauth_body_hash",
    "realm",
    "role",
    "a",
]


class FormatOnly(logging.Handler):
    """Formats each audit record (so that path is fuzzed too) and throws it away."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


AUDIT = logging.getLogger("tba_guard.audit")
AUDIT.addHandler(FormatOnly())
AUDIT.propagate = False


def settings(opaque: bool, every_method: bool) -> GuardSettings:
    methods = ("HMAC-SHA1", "HMAC-SHA256", "HMAC-SHA512", "PLAINTEXT") if every_method else ()
    return GuardSettings(
        realm="123456_SB1",
        error_detail="opaque" if opaque else "code",
        signature_methods=methods or ("HMAC-SHA256",),
        body_max_bytes=4096,
        integrations=(
            Integration("ck-fuzz", "cs-fuzz-consumer-secret"),
            Integration("ck-blocked", "cs-blocked-integration", state="blocked"),
        ),
        tokens=(
            Token("tk-fuzz", "ts-fuzz-token-secret", "ck-fuzz"),
            Token("tk-off", "ts-off-token-secret", "ck-fuzz", active=False),
        ),
    )


SETTINGS = {(o, m): settings(o, m) for o in (False, True) for m in (False, True)}


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (the in-memory stores don't) without an event loop:
    an event loop per input would cost more than the verification."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the verification suspended with in-memory stores")


def signed_header(
    fdp: atheris.FuzzedDataProvider, method: str, uri: str, pairs: list[tuple[str, str]]
) -> str:
    """A header of fuzzer-chosen parameters, signed as a client with the right secrets would
    (with tba_guard's own signer: this target looks for crashes, not for signature mistakes)."""
    oauth = {
        "oauth_consumer_key": "ck-fuzz",
        "oauth_token": "tk-fuzz",
        "oauth_nonce": "n" + str(fdp.ConsumeIntInRange(0, 10**12)),
        "oauth_timestamp": str(NOW + fdp.ConsumeIntInRange(-400, 400)),
        "oauth_signature_method": fdp.PickValueInList(["HMAC-SHA256", "HMAC-SHA1", "PLAINTEXT"]),
        "oauth_version": "1.0",
    }
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        oauth[fdp.PickValueInList(NAMES)] = fdp.ConsumeUnicodeNoSurrogates(12)
    signed = [(n, v) for n, v in oauth.items() if n != "realm"] + pairs
    signature_method = oauth["oauth_signature_method"]
    if signature_method in SIGNATURE_METHODS:
        base = base_string(method, uri, signed)
        oauth["oauth_signature"] = sign(
            signature_method, base, "cs-fuzz-consumer-secret", "ts-fuzz-token-secret"
        )
    encoded = (f'{quote(n, safe="")}="{quote(v, safe="~")}"' for n, v in oauth.items())
    return "OAuth " + ", ".join(encoded)


def outcome(guard: Guard, request: OAuthRequest) -> Identity | TBAError:
    try:
        identity: Identity = run(guard.verify(request))
    except TBAError as error:
        return error
    return identity


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    settings = SETTINGS[fdp.ConsumeBool(), fdp.ConsumeBool()]
    method = fdp.PickValueInList(METHODS)
    path = "/" + quote(fdp.ConsumeUnicodeNoSurrogates(16), safe="/%")
    if fdp.ConsumeBool():
        query = fdp.ConsumeBytes(40).decode("latin-1")  # raw, possibly broken escapes
    else:
        count = fdp.ConsumeIntInRange(0, 4)
        query = "&".join(
            f"{quote(_name(fdp), safe='')}={quote(fdp.ConsumeUnicodeNoSurrogates(8), safe='')}"
            for _ in range(count)
        )
    content_type = fdp.PickValueInList(CONTENT_TYPES)
    body = fdp.ConsumeBytes(64)
    url = HOST + path + ("?" + query if query else "")
    raw_header = fdp.ConsumeBool()
    try:
        request = request_from_url(
            method, url, [("Content-Type", content_type)] if content_type else [], body
        )
    except ValueError:
        return  # not a URL a server could have received
    if raw_header:
        request.authorization = fdp.ConsumeBytes(300).decode("latin-1")
    else:
        pairs = form_pairs(request.query)
        if request.is_form:
            pairs += form_pairs(body.decode("utf-8", "surrogateescape"))
        request.authorization = signed_header(fdp, request.method, request.uri, pairs)
    request.authorization_count = 1
    result = outcome(settings_guard(settings), request)
    if isinstance(result, TBAError):
        assert result.code in CATALOG, result.code
        assert result.status < 500 or result.status == 503, result.status
        response = error_response(result, realm="123456_SB1", detail=settings.error_detail)
        for name, value in response.headers:
            assert not CONTROL.search(value), (name, value)
        return
    assert not raw_header, "an unsigned header was accepted"


def _name(fdp: atheris.FuzzedDataProvider) -> str:
    return fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(6)


def settings_guard(settings: GuardSettings) -> Guard:
    """A fresh guard per input: its replay store must not carry state between inputs, or the
    fuzzer's runs would not reproduce."""
    store = MemoryReplayStore(10, clock=lambda: NOW)
    return Guard(settings, clock=lambda: NOW, replay_store=store)


def main() -> None:
    atheris.Setup(fuzzer_argv(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
