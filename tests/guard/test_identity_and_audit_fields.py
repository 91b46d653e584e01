"""What a decision records: the `Identity` an accepted request speaks for (equal by value,
hashable, printable without secrets) and the audit event's fields when the request left some
out (no token, no realm), with and without a configured realm."""

from __future__ import annotations

import pytest

from tba_guard import AuditEvent, ErrorCode, Guard, Identity, TBAError
from tba_guard.core.request import OAuthRequest, base_string_uri_from_url
from tests.support import BASE_URL, Clock, make_settings, oauth_header

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"
FIELDS = ("ck", "tk", "123456_SB1", "38", "3")


def test_identities_are_equal_exactly_when_every_field_is() -> None:
    same = Identity(*FIELDS)
    assert Identity(*FIELDS) == same
    assert hash(Identity(*FIELDS)) == hash(same)
    assert len({Identity(*FIELDS), same}) == 1
    for index in range(len(FIELDS)):
        changed = list(FIELDS)
        changed[index] += "x"
        assert Identity(*changed) != same
    assert same != FIELDS  # another type, though it holds the same values
    assert same != "ck"


def test_an_identity_prints_its_fields() -> None:
    text = repr(Identity(*FIELDS))
    assert text == (
        "Identity(consumer_key='ck', token_id='tk', realm='123456_SB1', entity='38', role='3')"
    )


def test_a_request_prints_without_its_header() -> None:
    request = OAuthRequest("GET", "https://h/p", authorization='OAuth oauth_signature="s3cr3t"')
    assert repr(request) == "OAuthRequest(method='GET', uri='https://h/p')"


@pytest.mark.parametrize("url", ["/relative/path", "https:///no-host", "host.example/path"])
def test_a_url_without_scheme_or_host_has_no_base_string_uri(url: str) -> None:
    with pytest.raises(ValueError, match="scheme and a host"):
        base_string_uri_from_url(url)


def test_userinfo_and_default_ports_leave_the_base_string_uri() -> None:
    assert (
        base_string_uri_from_url("HTTPS://u:p@Host.Example:443/a b") == "https://host.example/a%20b"
    )
    assert base_string_uri_from_url("http://h:8080") == "http://h:8080/"


async def audited(settings_realm: str | None, header: str | None) -> AuditEvent:
    events: list[AuditEvent] = []
    guard = Guard(make_settings(realm=settings_realm), clock=Clock(), audit_hooks=[events.append])
    headers = {"Authorization": header} if header is not None else {}
    with pytest.raises(TBAError):
        await guard.verify_request("GET", URL, headers)
    assert len(events) == 1
    return events[0]


async def test_a_rejection_without_token_or_realm_records_the_configured_realm() -> None:
    header = oauth_header("GET", URL, token=None, realm=None)
    event = await audited("123456_SB1", header)
    assert (event.outcome, event.code) == ("rejected", ErrorCode.MISSING_REQUIRED_PARAMETER)
    assert (event.consumer_key, event.token_id, event.realm) == ("ck-order-sync", "", "123456_SB1")


async def test_without_a_configured_realm_the_audit_records_the_realm_sent_or_none() -> None:
    event = await audited(None, oauth_header("GET", URL, realm="999_SB2", signature="bad"))
    assert (event.code, event.realm, event.token_id) == (
        ErrorCode.INVALID_SIGNATURE,
        "999_SB2",
        "tk-alice",
    )
    event = await audited(None, oauth_header("GET", URL, realm=None, signature="bad"))
    assert (event.code, event.realm) == (ErrorCode.INVALID_SIGNATURE, "")


async def test_a_request_without_a_header_records_empty_identifiers() -> None:
    event = await audited("123456_SB1", None)
    assert event.code == ErrorCode.MISSING_REQUIRED_PARAMETER
    assert (event.consumer_key, event.token_id, event.realm) == ("", "", "123456_SB1")
    assert (event.method, event.path) == ("GET", "/app/site/hosting/restlet.nl")


async def test_an_accepted_request_records_its_identifiers_and_no_code() -> None:
    events: list[AuditEvent] = []
    guard = Guard(make_settings(), clock=Clock(), audit_hooks=[events.append])
    identity = await guard.verify_request("GET", URL, {"Authorization": oauth_header("GET", URL)})
    assert identity == Identity("ck-order-sync", "tk-alice", "123456_SB1", "38", "3")
    [event] = events
    assert (event.outcome, event.code, event.reason) == ("accepted", "", "")
    assert (event.token_id, event.realm) == ("tk-alice", "123456_SB1")


async def test_without_a_configured_realm_the_identity_speaks_for_the_realm_sent() -> None:
    guard = Guard(make_settings(realm=None), clock=Clock())
    header = oauth_header("GET", URL, realm="999_SB2")
    identity = await guard.verify_request("GET", URL, {"Authorization": header})
    assert identity == Identity("ck-order-sync", "tk-alice", "999_SB2", "38", "3")
