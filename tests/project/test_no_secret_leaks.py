"""No secret in any response or log record, on any path.

Every code that can occur on a protected resource (and the accepted path, and the 503, 413 and
408) is driven through the middleware with distinctive secrets, in code and opaque mode, with
development hints off and on. Everything observable is captured (status, headers and body of
every response, every log record of every logger with its message, arguments, extra fields
(`tba_audit`) and traceback, every audit event, the reprs of settings, credentials, guard and
errors) and searched for the secrets in every form they travel in.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tba_guard import (
    Guard,
    GuardSettings,
    Integration,
    MemoryReplayStore,
    TBAError,
    Token,
)
from tba_guard.core.audit import AuditEvent
from tests.support import (
    BASE_URL,
    NOW,
    REALM,
    SHARED_REDIS_URL,
    FailingStore,
    Outcome,
    Request,
    delete_prefix,
    drive,
    oauth_header,
    shared_redis,
    unique_prefix,
)

CANARY = uuid.uuid4().hex
CONSUMER_SECRET = f"cs-{CANARY[:16]}-consumer"
TOKEN_SECRET = f"ts-{CANARY[16:]}-token"
BLOCKED_SECRET = f"cs-blocked-{CANARY[:12]}"
INACTIVE_SECRET = f"ts-inactive-{CANARY[12:24]}"
REDIS_PASSWORD = f"redis-pw-{CANARY[8:20]}"
SECRETS = (CONSUMER_SECRET, TOKEN_SECRET, BLOCKED_SECRET, INACTIVE_SECRET, REDIS_PASSWORD)
#: The unmistakable parts: a leak of any one of them, whole or in part, shows up.
NEEDLES = (CANARY[:16], CANARY[16:], CANARY[:12], CANARY[12:24], CANARY[8:20])

URL = f"{BASE_URL}/services/rest/record"
PATH = b"/services/rest/record"
FORM = "application/x-www-form-urlencoded"
CK, TK = "ck-leak", "tk-leak"


def leak_settings(**overrides: Any) -> GuardSettings:
    values: dict[str, Any] = {
        "realm": REALM,
        "signature_methods": ["HMAC-SHA256", "PLAINTEXT"],
        "integrations": [
            Integration(CK, CONSUMER_SECRET, name="Leak test"),
            Integration("ck-blocked", BLOCKED_SECRET, state="blocked"),
        ],
        "tokens": [
            Token(TK, TOKEN_SECRET, CK, entity="38", role="3"),
            Token("tk-inactive", INACTIVE_SECRET, CK, active=False),
            Token("tk-revoked", TOKEN_SECRET + "-revoked", CK, revoked=True),
        ],
    }
    values.update(overrides)
    return GuardSettings(**values)


def signed(method: str = "GET", **kwargs: Any) -> str:
    kwargs.setdefault("consumer_key", CK)
    kwargs.setdefault("consumer_secret", CONSUMER_SECRET)
    kwargs.setdefault("token", TK)
    kwargs.setdefault("token_secret", TOKEN_SECRET)
    return oauth_header(method, URL, **kwargs)


class BrokenCredentials:
    """A credential database that is down."""

    async def integration(self, consumer_key: str) -> Integration | None:
        raise ConnectionError("database unreachable")

    async def token(self, token_id: str) -> Token | None:
        raise ConnectionError("database unreachable")


@dataclass
class Scenario:
    code: str  # the audit code it must produce ("" when accepted)
    run: Callable[[GuardSettings], list[Outcome]]


def one(
    value: str | None,
    *,
    body: bytes = b"",
    form: bool = False,
    stall: bool = False,
    chunks: list[bytes] | None = None,
    **kwargs: Any,
) -> Callable[[GuardSettings], list[Outcome]]:
    def run(settings: GuardSettings) -> list[Outcome]:
        headers = [] if value is None else [(b"authorization", value.encode())]
        if form:
            headers.append((b"content-type", FORM.encode()))
        request = Request("POST" if body or chunks else "GET", PATH, b"", headers, chunks or [body])
        guard = Guard(settings, clock=lambda: NOW, **kwargs) if kwargs else None
        return [asyncio.run(drive(request, settings, stall=stall, guard=guard))]

    return run


def replayed(settings: GuardSettings) -> list[Outcome]:
    """The same correct header twice through one guard: the second is NonceUsed."""
    guard = Guard(settings, clock=lambda: NOW, replay_store=MemoryReplayStore(clock=lambda: NOW))
    value = signed(nonce=f"nonce-replayed-{uuid.uuid4().hex[:8]}")
    request = Request("GET", PATH, b"", [(b"authorization", value.encode())])
    return [asyncio.run(drive(request, settings, guard=guard)) for _ in range(2)]


def plaintext_over(secure: bool) -> Callable[[GuardSettings], list[Outcome]]:
    """PLAINTEXT puts both secrets in the header itself: the header must never be echoed."""

    def run(settings: GuardSettings) -> list[Outcome]:
        value = signed(signature_method="PLAINTEXT")
        request = Request("GET", PATH, b"", [(b"authorization", value.encode())])
        if not secure:
            request.headers.append((b"x-forwarded-proto", b"http"))
            settings = settings.replace(trusted_proxies=("*",))
        return [asyncio.run(drive(request, settings))]

    return run


SCENARIOS: dict[str, Scenario] = {
    "accepted": Scenario("", one(signed())),
    "accepted plaintext": Scenario("", plaintext_over(secure=True)),
    "FeatureDisabled": Scenario(
        "FeatureDisabled", lambda s: one(signed())(s.replace(feature_enabled=False))
    ),
    "no header": Scenario("MissingRequiredParameter", one(None)),
    "unparseable": Scenario("MissingRequiredParameter", one(signed()[:-9] + ", garbage")),
    "VersionRejected": Scenario("VersionRejected", one(signed(version="2.0"))),
    "UnknownAlgorithm": Scenario("UnknownAlgorithm", one(signed(signature_method="HMAC-SHA1"))),
    "plaintext over http": Scenario("UnknownAlgorithm", plaintext_over(secure=False)),
    "InvalidTimestamp": Scenario("InvalidTimestamp", one(signed(timestamp=NOW * 1000))),
    "NonceRejected": Scenario("NonceRejected", one(signed(nonce="abc"))),
    "NonceUsed": Scenario("NonceUsed", replayed),
    "UnknownIntegration": Scenario("UnknownIntegration", one(signed(consumer_key="ck-nobody"))),
    "IntegrationBlocked": Scenario(
        "IntegrationBlocked",
        one(signed(consumer_key="ck-blocked", consumer_secret=BLOCKED_SECRET)),
    ),
    "TokenRejected": Scenario("TokenRejected", one(signed(token="tk-revoked"))),
    "EntityOrRoleDisabled": Scenario(
        "EntityOrRoleDisabled", one(signed(token="tk-inactive", token_secret=INACTIVE_SECRET))
    ),
    "InvalidSignature": Scenario("InvalidSignature", one(signed(token_secret=CONSUMER_SECRET))),
    "ReplayStoreUnavailable": Scenario(
        "ReplayStoreUnavailable", one(signed(), replay_store=FailingStore())
    ),
    "CredentialStoreUnavailable": Scenario(
        "CredentialStoreUnavailable", one(signed(), credentials=BrokenCredentials())
    ),
    "RequestBodyTooLarge": Scenario(
        "RequestBodyTooLarge",
        lambda s: one(
            signed("POST", body="a=" + "x" * 99, form=True), body=b"a=" + b"x" * 99, form=True
        )(s.replace(body_max_bytes=50)),
    ),
    "RequestBodyTimeout": Scenario(
        "RequestBodyTimeout",
        lambda s: one(signed("POST", body="a=1", form=True), chunks=[b"a="], form=True, stall=True)(
            s.replace(body_timeout=0.01)
        ),
    ),
}

#: Codes that can occur on a protected resource, by the error catalog; the flow's own
#: (AuthorizationFlowRequired, InvalidCallback, InvalidVerifier) cannot.
RESOURCE_CODES = {
    "FeatureDisabled",
    "MissingRequiredParameter",
    "VersionRejected",
    "UnknownAlgorithm",
    "InvalidTimestamp",
    "NonceRejected",
    "NonceUsed",
    "UnknownIntegration",
    "IntegrationBlocked",
    "TokenRejected",
    "EntityOrRoleDisabled",
    "InvalidSignature",
    "ReplayStoreUnavailable",
    "CredentialStoreUnavailable",
    "RequestBodyTooLarge",
    "RequestBodyTimeout",
}


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    """Each log record rendered every way a handler could render it, extra fields included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    for record in records:
        texts += [formatter.format(record), repr(record.msg), repr(record.args)]
        texts += [f"{key}={value!r}" for key, value in vars(record).items()]
    return texts


def leaks(texts: list[str]) -> list[str]:
    forms = set(NEEDLES) | {quote(s, safe="") for s in SECRETS} | set(SECRETS)
    return [f"{form} in {text[:200]!r}" for text in texts for form in forms if form in text]


def outcome_texts(outcomes: list[Outcome]) -> list[str]:
    texts = []
    for outcome in outcomes:
        texts.append(outcome.body.decode("latin-1"))
        texts += [f"{n.decode('latin-1')}: {v.decode('latin-1')}" for n, v in outcome.headers]
    return texts


@pytest.mark.parametrize("hints", [False, True], ids=["hints-off", "hints-on"])
@pytest.mark.parametrize("detail", ["code", "opaque"])
def test_no_secret_in_any_response_or_log_record_for_any_code(
    detail: str, hints: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    settings = leak_settings(error_detail=detail, development_hints=hints)
    texts = [repr(settings), str(settings), repr(settings.integrations), repr(settings.tokens)]
    statuses = set()
    for name, scenario in SCENARIOS.items():
        already = len(caplog.records)
        outcomes = scenario.run(settings)
        codes = [r.tba_audit["code"] for r in caplog.records[already:] if hasattr(r, "tba_audit")]
        assert codes[-1] == scenario.code, name  # the scenario drives the code it is named for
        statuses |= {outcome.status for outcome in outcomes}
        texts += outcome_texts(outcomes)
    audited = {
        record.tba_audit["code"] for record in caplog.records if hasattr(record, "tba_audit")
    }
    # Every code that can occur on a protected resource was driven, and the 503, 413 and 408.
    assert audited == RESOURCE_CODES | {""}
    assert {503, 413, 408} <= statuses
    if hints and detail == "code":
        assert any('"hint"' in text for text in texts)  # the hints were there to be searched
    texts += record_texts(caplog.records)
    assert not leaks(texts)


def test_no_secret_in_audit_hook_events_errors_or_reprs() -> None:
    events: list[AuditEvent] = []
    settings = leak_settings()
    guard = Guard(settings, clock=lambda: NOW, audit_hooks=[events.append])
    texts = [repr(guard), repr(guard.credentials), repr(guard.settings)]
    values = [
        signed(),
        signed(token_secret="wrong"),
        signed(signature_method="PLAINTEXT"),
        signed(consumer_key="ck-blocked", consumer_secret=BLOCKED_SECRET),
        signed(token="tk-inactive", token_secret=INACTIVE_SECRET),
    ]
    for value in values:
        try:
            asyncio.run(guard.verify_request("GET", URL, {"Authorization": value}))
        except TBAError as error:
            texts += [str(error), repr(error), error.reason, error.message]
    assert len(events) == len(values)
    texts += [repr(event) for event in events]
    assert not leaks(texts)


def test_no_redis_password_in_settings_responses_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A replay store URL carries a password: not in reprs, not in the 503, not in the log.

    Against the shared Redis (which has no such user, so AUTH fails) and a port where nothing
    listens."""
    client = shared_redis()
    prefix = unique_prefix()
    caplog.set_level(logging.DEBUG)
    host_port = SHARED_REDIS_URL.removeprefix("redis://").split("/")[0]
    texts = []
    try:
        for location in (
            f"redis://tba-leak-user:{REDIS_PASSWORD}@{host_port}/0",  # WRONGPASS
            f"redis://user:{REDIS_PASSWORD}@127.0.0.1:1/0",
        ):
            settings = leak_settings(
                replay_store=location, replay_store_key_prefix=prefix, development_hints=True
            )
            texts += [repr(settings), str(settings)]
            outcomes = one(signed())(settings)
            assert outcomes[0].status == 503
            texts += outcome_texts(outcomes)
    finally:
        delete_prefix(client, prefix)
        client.close()
    texts += record_texts(caplog.records)
    assert not leaks(texts)
