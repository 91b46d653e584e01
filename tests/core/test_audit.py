"""The audit trail: one structured record per decision on `tba_guard.audit`, and the hook.

The metrics example is the README's, run as written: a hook that counts codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from starlette.testclient import TestClient

from tba_guard import AuditEvent, Guard, MemoryReplayStore, TBAGuardMiddleware
from tba_guard.core.audit import record
from tests.support import (
    APP_STATUS,
    BASE_URL,
    CONSUMER_KEY,
    NOW,
    REALM,
    TOKEN_ID,
    Clock,
    Request,
    drive,
    echo_app,
    make_settings,
    oauth_header,
)

URL = f"{BASE_URL}/services/rest/orders"
FIELDS = {
    "scheme",
    "detail",
    "outcome",
    "code",
    "consumer_key",
    "token_id",
    "realm",
    "method",
    "path",
    "client",
    "time",
    "reason",
}


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tba_guard.audit"]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    audit: dict[str, Any] = record.tba_audit  # type: ignore[attr-defined]
    return audit


def guarded(clock: Clock, **overrides: Any) -> TestClient:
    app = TBAGuardMiddleware(echo_app(), guard=Guard(make_settings(**overrides), clock=clock))
    return TestClient(app, base_url=BASE_URL, client=("198.51.100.7", 40000))


def test_an_accepted_request_is_one_info_record_with_every_field(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    with guarded(clock) as client:
        assert (
            client.get(URL, headers={"Authorization": oauth_header("GET", URL)}).status_code == 200
        )
    (record,) = audit_records(caplog)
    assert record.levelno == logging.INFO
    assert fields(record) == {
        "outcome": "accepted",
        "code": "",
        "consumer_key": CONSUMER_KEY,
        "token_id": TOKEN_ID,
        "realm": REALM,
        "method": "GET",
        "path": "/services/rest/orders",
        "client": "198.51.100.7",
        "time": NOW,  # the injected clock
        "reason": "",
        "scheme": "tba",
        "detail": "",
    }
    assert record.getMessage().startswith("accepted - GET /services/rest/orders")


def test_a_rejected_request_is_one_warning_record_with_its_code_and_reason(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    value = oauth_header("POST", URL, token="tk-revoked", token_secret="ts-revoked-token-secret")
    with guarded(clock) as client:
        assert client.post(URL, headers={"Authorization": value}).status_code == 401
    (record,) = audit_records(caplog)
    assert record.levelno == logging.WARNING
    event = fields(record)
    assert set(event) == FIELDS
    assert event["outcome"] == "rejected"
    assert event["code"] == "TokenRejected"
    assert event["token_id"] == "tk-revoked"
    assert event["method"] == "POST"
    assert event["reason"] == "revoked token"


def test_at_warning_level_rejections_are_recorded_and_acceptances_are_not(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING, logger="tba_guard.audit")
    forged = oauth_header("GET", URL, consumer_secret="not-the-secret")
    with guarded(clock) as client:
        assert (
            client.get(URL, headers={"Authorization": oauth_header("GET", URL)}).status_code == 200
        )
        assert client.get(URL, headers={"Authorization": forged}).status_code == 401
    outcomes = [(r.levelno, fields(r)["outcome"]) for r in audit_records(caplog)]
    assert outcomes == [(logging.WARNING, "rejected")]


def test_a_level_changed_after_requests_were_audited_takes_effect_at_once(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    """The guard reads logging's cached answer per level: a later `setLevel` or
    `logging.disable` must still be obeyed on the very next request."""
    accepted = {"Authorization": oauth_header("GET", URL)}
    with guarded(clock) as client:
        caplog.set_level(logging.INFO, logger="tba_guard.audit")
        assert client.get(URL, headers=accepted).status_code == 200
        assert (
            client.get(URL, headers={"Authorization": oauth_header("GET", URL)}).status_code == 200
        )
        assert len(audit_records(caplog)) == 2
        caplog.set_level(logging.WARNING, logger="tba_guard.audit")
        assert (
            client.get(URL, headers={"Authorization": oauth_header("GET", URL)}).status_code == 200
        )
        assert len(audit_records(caplog)) == 2
        caplog.set_level(logging.INFO, logger="tba_guard.audit")
        logging.disable(logging.CRITICAL)
        try:
            forged = oauth_header("GET", URL, consumer_secret="not-the-secret")
            assert client.get(URL, headers={"Authorization": forged}).status_code == 401
        finally:
            logging.disable(logging.NOTSET)
        assert len(audit_records(caplog)) == 2
        assert (
            client.get(URL, headers={"Authorization": oauth_header("GET", URL)}).status_code == 200
        )
        assert len(audit_records(caplog)) == 3


async def test_an_acceptance_nobody_listens_to_builds_no_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged at WARNING and with no hook, an acceptance costs nothing more: the guard reads
    its clock once, for the timestamp window, and not again for a record nobody receives."""
    caplog.set_level(logging.WARNING, logger="tba_guard.audit")
    reads: list[float] = []

    def counted_clock() -> float:
        reads.append(NOW)
        return NOW

    guard = Guard(
        make_settings(), clock=counted_clock, replay_store=MemoryReplayStore(clock=Clock())
    )
    await guard.verify_request("GET", URL, {"Authorization": oauth_header("GET", URL)})
    assert len(reads) == 1
    assert audit_records(caplog) == []


def test_opaque_mode_hides_the_code_on_the_wire_but_not_in_the_audit_log(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    value = oauth_header("GET", URL, consumer_key="ck-unknown")
    with guarded(clock, error_detail="opaque") as client:
        response = client.get(URL, headers={"Authorization": value})
    assert response.json()["error"]["code"] == "INVALID_LOGIN_ATTEMPT"
    (record,) = audit_records(caplog)
    assert fields(record)["code"] == "UnknownIntegration"
    assert fields(record)["consumer_key"] == "ck-unknown"


@pytest.mark.parametrize(
    ("overrides", "chunks", "stall", "code"),
    [
        ({"body_max_bytes": 4}, [b"a=12345"], False, "RequestBodyTooLarge"),
        ({"body_timeout": 0.01}, [b"a="], True, "RequestBodyTimeout"),
    ],
)
def test_body_limits_are_decisions_on_the_audit_log_too(
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    chunks: list[bytes],
    stall: bool,
    code: str,
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    value = oauth_header("POST", URL, body="a=12345", form=True)
    headers = [
        (b"authorization", value.encode()),
        (b"content-type", b"application/x-www-form-urlencoded"),
    ]
    request = Request("POST", b"/services/rest/orders", b"", headers, chunks)
    asyncio.run(drive(request, make_settings(**overrides), stall=stall))
    (record,) = audit_records(caplog)
    assert fields(record)["code"] == code
    assert fields(record)["consumer_key"] == CONSUMER_KEY


def test_a_nonce_signature_or_header_never_reaches_the_record(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    value = oauth_header("GET", URL, nonce="nonce-must-not-be-logged")
    with guarded(clock) as client:
        client.get(URL, headers={"Authorization": value})
    (record,) = audit_records(caplog)
    rendered = record.getMessage() + repr(fields(record))
    signature = value.split('oauth_signature="')[1].split('"')[0]
    assert "nonce-must-not-be-logged" not in rendered
    assert signature not in rendered
    assert "oauth_" not in rendered


def test_client_chosen_values_cannot_forge_a_second_log_line(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    forged = "ck\naccepted - GET /admin consumer_key=admin"
    value = oauth_header("GET", URL, consumer_key=forged)
    with guarded(clock) as client:
        client.get(URL, headers={"Authorization": value})
    (record,) = audit_records(caplog)
    assert "\n" not in record.getMessage()
    assert fields(record)["consumer_key"].startswith("ck\\x0aaccepted")


def test_long_client_chosen_values_are_cut(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    value = oauth_header("GET", URL, consumer_key="k" * 1000)
    with guarded(clock) as client:
        client.get(URL, headers={"Authorization": value})
    (record,) = audit_records(caplog)
    assert fields(record)["consumer_key"] == "k" * 128 + "…"


# --- the metrics hook: the README example -------------------------------------------------


def test_the_readme_hook_counts_decisions_by_code(clock: Clock) -> None:
    # As in the README's "The audit log":
    decisions: Counter[str] = Counter()

    def count_codes(event: AuditEvent) -> None:
        decisions[event.code or "accepted"] += 1

    app = TBAGuardMiddleware(
        echo_app(), guard=Guard(make_settings(), clock=clock, audit_hooks=[count_codes])
    )
    with TestClient(app, base_url=BASE_URL) as client:
        client.get(URL, headers={"Authorization": oauth_header("GET", URL)})
        client.get(URL, headers={"Authorization": oauth_header("GET", URL)})
        client.get(URL, headers={"Authorization": oauth_header("GET", URL, version="2")})
        client.get(URL, headers={"Authorization": oauth_header("GET", URL, consumer_secret="x")})
        client.get(URL)
    assert decisions == Counter(
        {
            "accepted": 2,
            "VersionRejected": 1,
            "InvalidSignature": 1,
            "MissingRequiredParameter": 1,
        }
    )


def test_a_failing_hook_changes_no_decision_and_is_logged(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    def broken(event: AuditEvent) -> None:
        raise RuntimeError("metrics backend down")

    app = TBAGuardMiddleware(
        echo_app(), guard=Guard(make_settings(), clock=clock, audit_hooks=[broken])
    )
    with TestClient(app, base_url=BASE_URL) as client:
        good = client.get(URL, headers={"Authorization": oauth_header("GET", URL)})
        bad = client.get(URL, headers={"Authorization": oauth_header("GET", URL, version="2")})
    assert good.status_code == 200
    assert bad.status_code == 400
    failures = [r for r in audit_records(caplog) if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "audit hook" in failures[0].getMessage()


def test_hook_events_are_the_logged_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    events: list[AuditEvent] = []
    request = Request(headers=[(b"authorization", oauth_header("GET", f"{BASE_URL}/").encode())])
    outcome = asyncio.run(drive(request, make_settings(), hooks=[events.append]))
    assert outcome.status == APP_STATUS
    (record,) = audit_records(caplog)
    (event,) = events
    assert fields(record) == {name: getattr(event, name) for name in FIELDS}


def test_the_log_line_itself_names_the_key_the_client_and_the_reason(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    # Plain log handlers print the message, not `tba_audit`: the line must carry the fields.
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    revoked = oauth_header("POST", URL, token="tk-revoked", token_secret="ts-revoked-token-secret")
    with guarded(clock) as client:
        client.post(URL, headers={"Authorization": revoked})
        client.get(URL, headers={"Authorization": oauth_header("GET", URL)})
    rejected, accepted = (record.getMessage() for record in audit_records(caplog))
    assert rejected == (
        f"rejected TokenRejected POST /services/rest/orders consumer_key={CONSUMER_KEY} "
        f"token_id=tk-revoked realm={REALM} client=198.51.100.7 reason=revoked token"
    )
    assert accepted.endswith("client=198.51.100.7 reason=-")
    assert f"consumer_key={CONSUMER_KEY} token_id={TOKEN_ID}" in accepted


def test_a_lone_surrogate_in_a_field_is_written_as_an_escape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A handler writing UTF-8 would raise on a lone surrogate and lose the record.
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    events: list[AuditEvent] = []
    event = AuditEvent(
        "rejected", "NonceUsed", "ck\udcff", "", "", "GET", "/", "", float(NOW), "x\udc80"
    )
    record(event, (events.append,))
    (logged,) = audit_records(caplog)
    assert events[0].consumer_key == "ck\\udcff"
    assert events[0].reason == "x\\udc80"
    logged.getMessage().encode("utf-8")  # no surrogate left
