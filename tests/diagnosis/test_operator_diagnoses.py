"""What operators are told, on requests oauthlib's `Client` signed wrongly: the client's clock
skew and a timestamp in milliseconds, a resend told from a nonce collision, the realm against
the account in the host. Each lands in the audit record's detail (and the development hint),
never on the wire in opaque mode, and never changes the verdict."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client
from starlette.testclient import TestClient

from tba_guard import AuditEvent, Guard, MemoryReplayStore, ReplayKey, TBAGuardMiddleware
from tba_guard.tools.explain import explain
from tests.support import echo_app
from tests.support.signing import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    NOW,
    REALM,
    TOKEN_ID,
    TOKEN_SECRET,
    Clock,
    make_settings,
)

NETSUITE = "https://123456-sb1.restlets.api.netsuite.com"
URL = f"{NETSUITE}/app/site/hosting/restlet.nl?script=7&deploy=1"


def signed(url: str = URL, method: str = "GET", **client: Any) -> dict[str, str]:
    """oauthlib's `Client`, as most Python clients sign; `client` bends what it is given."""
    options: dict[str, Any] = {
        "realm": REALM,
        "signature_method": SIGNATURE_HMAC_SHA256,
        "timestamp": str(NOW),  # the guard's injected clock
    }
    options |= client
    signer = Client(
        CONSUMER_KEY,
        client_secret=CONSUMER_SECRET,
        resource_owner_key=TOKEN_ID,
        resource_owner_secret=TOKEN_SECRET,
        **options,
    )
    _, headers, _ = signer.sign(url, method)
    return dict(headers)


class Guarded:
    """A guarded app on an injected clock, its audit events kept."""

    def __init__(self, store: Any = None, **settings: Any) -> None:
        self.events: list[AuditEvent] = []
        self.guard = Guard(
            make_settings(**settings),
            clock=Clock(),
            replay_store=store or MemoryReplayStore(clock=Clock()),
            audit_hooks=[self.events.append],
        )
        self.client = TestClient(
            TBAGuardMiddleware(echo_app(), guard=self.guard), base_url=NETSUITE
        )

    def get(self, headers: dict[str, str], url: str = URL) -> Any:
        return self.client.get(url, headers=headers)

    @property
    def detail(self) -> str:
        return self.events[-1].detail


def wire(response: Any) -> str:
    return response.text + "".join(f"{n}: {v}\n" for n, v in response.headers.items())


# --- the clock -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "said"),
    [
        (NOW - 400, "the client's clock is 400 s behind the server's: skew +400 s"),
        (NOW + 1000, "the client's clock is 1000 s ahead of the server's: skew -1000 s"),
    ],
)
def test_a_client_clock_off_is_told_its_signed_skew(timestamp: int, said: str) -> None:
    guarded = Guarded()
    response = guarded.get(signed(timestamp=str(timestamp)))
    assert response.json()["error"]["code"] == "InvalidTimestamp"
    assert guarded.events[-1].code == "InvalidTimestamp"
    assert guarded.detail.startswith(said + " (the server's clock minus oauth_timestamp)")
    assert "fix: synchronise the clock (NTP)" in guarded.detail


def test_a_thirteen_digit_timestamp_is_named_milliseconds() -> None:
    guarded = Guarded()
    response = guarded.get(signed(timestamp=str(NOW * 1000)))
    assert response.json()["error"]["code"] == "InvalidTimestamp"
    assert guarded.detail.startswith("the timestamp is in milliseconds; fix: send whole seconds")


def test_a_rejection_carries_a_date_a_client_can_read() -> None:
    response = Guarded().get(signed(timestamp=str(NOW - 400)))
    assert parsedate_to_datetime(response.headers["date"]).tzinfo is not None
    assert response.headers["date"].endswith(" GMT")


def test_the_skew_stays_off_the_wire_in_opaque_mode_and_in_the_audit() -> None:
    guarded = Guarded(error_detail="opaque", development_hints=True)
    response = guarded.get(signed(timestamp=str(NOW - 400)))
    assert response.json()["error"]["code"] == "INVALID_REQUEST"
    assert "skew" not in wire(response)
    assert "clock" not in wire(response)
    assert "skew +400 s" in guarded.detail


def test_the_development_hint_tells_the_skew() -> None:
    guarded = Guarded(development_hints=True)
    # The hint reads the wall clock where the middleware gives it none: a timestamp that far
    # back is off by at least as much by any clock.
    response = guarded.get(signed(timestamp="1000000000"))
    assert "likely cause: the client's clock is" in response.json()["error"]["hint"]
    assert "behind the server's: skew +" in response.json()["error"]["hint"]


async def test_explain_notes_the_signed_skew() -> None:
    header = signed(timestamp=str(NOW + 1000))["Authorization"]
    lines, accepted = await explain(make_settings(), "GET", URL, header, now=NOW)
    assert not accepted
    assert "  Note: skew -1000 s: the server's clock minus oauth_timestamp" in lines


# --- the nonce -----------------------------------------------------------------------------------

NONCE = "fixed-nonce-0123456789"


def test_the_same_signature_again_is_a_resend() -> None:
    guarded = Guarded()
    header = signed(nonce=NONCE, timestamp=str(NOW))
    assert guarded.get(header).status_code == 200
    again = guarded.get(header)
    assert again.json()["error"]["code"] == "NonceUsed"
    assert guarded.detail.startswith(
        "the same signature was sent again with this nonce and timestamp: a double submit"
    )
    assert "fix: do not send a request again once it was answered" in guarded.detail


def test_another_request_with_the_same_nonce_is_a_collision() -> None:
    guarded = Guarded()
    assert guarded.get(signed(nonce=NONCE, timestamp=str(NOW))).status_code == 200
    other = f"{NETSUITE}/app/site/hosting/restlet.nl?script=8&deploy=1"
    response = guarded.get(signed(other, nonce=NONCE, timestamp=str(NOW)), url=other)
    assert response.json()["error"]["code"] == "NonceUsed"  # the verdict, whatever the cause
    assert guarded.detail.startswith("another request (a different signature) drew the same")
    assert "a cryptographically secure random generator" in guarded.detail


class OwnStore:
    """A replay store of one's own, with today's protocol only: seen and claim."""

    def __init__(self) -> None:
        self.keys: set[ReplayKey] = set()

    async def seen(self, key: ReplayKey) -> bool:
        return key in self.keys

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


def test_a_store_of_ones_own_keeps_working_and_the_diagnosis_says_it_cannot_tell() -> None:
    store = OwnStore()
    guarded = Guarded(store)
    header = signed(nonce=NONCE, timestamp=str(NOW))
    assert guarded.get(header).status_code == 200
    assert len(store.keys) == 1
    assert guarded.get(header).json()["error"]["code"] == "NonceUsed"
    assert guarded.detail.startswith("the nonce was used before; the replay store keeps no")


def test_resend_and_collision_stay_off_the_wire_in_opaque_mode() -> None:
    guarded = Guarded(error_detail="opaque")
    header = signed(nonce=NONCE, timestamp=str(NOW))
    assert guarded.get(header).status_code == 200
    again = guarded.get(header)
    assert again.json()["error"]["code"] == "INVALID_LOGIN_ATTEMPT"
    assert "double submit" not in wire(again)
    assert "signature" not in again.text
    assert "double submit" in guarded.detail


# --- the realm against the host ------------------------------------------------------------------


@pytest.mark.parametrize("realm", ["123456-sb1", "123456_sb1", "123456-SB1"])
def test_the_hosts_account_spelled_otherwise_in_the_realm_is_flagged(realm: str) -> None:
    guarded = Guarded()
    response = guarded.get(signed(realm=realm))
    assert response.json()["error"]["code"] == "TokenRejected"
    assert (
        f"the realm {realm!r} is the account of the host 123456-sb1.restlets.api.netsuite.com "
        "written otherwise (case, or '-' for '_'): the realm is 123456_SB1"
    ) in guarded.detail
    assert 'fix: send realm="123456_SB1"' in guarded.detail


def test_a_realm_of_another_account_than_the_host_is_flagged() -> None:
    guarded = Guarded(development_hints=True)
    response = guarded.get(signed(realm="999999"))
    assert response.json()["error"]["code"] == "TokenRejected"
    said = "the realm '999999' names another account than the host"
    assert said in guarded.detail
    assert said in response.json()["error"]["hint"]


def test_the_realm_of_the_hosts_account_adds_nothing() -> None:
    guarded = Guarded()
    response = guarded.get(signed(realm=REALM, timestamp=str(NOW - 400)))
    assert response.json()["error"]["code"] == "InvalidTimestamp"
    assert "realm" not in guarded.detail


def test_the_realm_stays_off_the_wire_in_opaque_mode() -> None:
    guarded = Guarded(error_detail="opaque")
    response = guarded.get(signed(realm="123456-sb1"))
    assert "realm is 123456_SB1" not in wire(response)
    assert "realm is 123456_SB1" in guarded.detail


# --- the URL, in process -----------------------------------------------------------------------


def test_a_signature_for_the_other_scheme_names_it_and_never_its_secrets() -> None:
    guarded = Guarded(allowed_hosts=["123456-sb1.restlets.api.netsuite.com", "api.example.com"])
    http = URL.replace("https://", "http://")
    response = guarded.get(signed(http))
    assert response.json()["error"]["code"] == "InvalidSignature"
    assert guarded.detail.startswith(
        "the signature would verify as http://123456-sb1.restlets.api.netsuite.com/"
    )
    assert CONSUMER_SECRET not in guarded.detail
    assert TOKEN_SECRET not in guarded.detail


def test_a_signature_no_url_variant_makes_says_nothing_of_urls() -> None:
    guarded = Guarded()
    response = guarded.get(signed(URL.replace("script=7", "script=9")))
    assert response.json()["error"]["code"] == "InvalidSignature"
    assert "would verify" not in guarded.detail
