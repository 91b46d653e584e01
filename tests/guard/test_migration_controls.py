"""The move from TBA to OAuth 2.0: which schemes an integration may use, brownout windows in
which TBA is refused with a code that names the move, and the usage counts that show who still
signs with TBA."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tba_guard import Guard, TBAFlow, TBAGuardMiddleware
from tba_guard.core.records import Brownout, Integration
from tba_guard.core.settings import GuardSettings, SettingsError
from tba_guard.stores.memory import StaticCredentials
from tba_guard.stores.usage import UsageBatch, UsageCounts
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    NOW,
    TOKEN_ID,
    Clock,
    oauth_header,
)
from tests.support.oauth2 import (
    CLIENT_ID,
    RESTLET_PATH,
    RSA_CERTIFICATE_ID,
    TOKEN_PATH,
    assertion,
    oauth2_settings,
    rsa_key,
    token_form,
)

URL = f"{BASE_URL}{RESTLET_PATH}?script=1&deploy=1"


async def ok(request: Any) -> JSONResponse:
    return JSONResponse({"scheme": request.scope["tba"].scheme})


def client_for(settings: GuardSettings, guard: Guard | None = None) -> TestClient:
    guard = guard or Guard(settings, clock=Clock())
    return TestClient(
        TBAFlow(Starlette(routes=[Route("/{p:path}", ok)]), guard=guard), base_url=BASE_URL
    )


def tba(client: TestClient, **signing: Any) -> Any:
    return client.get(URL, headers={"authorization": oauth_header("GET", URL, **signing)})


def bearer(client: TestClient) -> Any:
    form = token_form(assertion(rsa_key(), RSA_CERTIFICATE_ID))
    token = client.post(TOKEN_PATH, data=form).json()["access_token"]
    return client.get(URL, headers={"authorization": f"Bearer {token}"})


def window(start: float, length: float = 3600, consumer_key: str | None = None) -> Brownout:
    return Brownout(start, length, consumer_key)


def test_during_a_brownout_tba_is_refused_with_its_code_and_oauth2_still_works() -> None:
    client = client_for(oauth2_settings(brownouts=[window(NOW - 60)]))
    response = tba(client)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "TBABrownout"
    assert "OAuth 2.0" in error["message"]
    assert bearer(client).json() == {"scheme": "oauth2"}


@pytest.mark.parametrize(
    "brownout",
    [window(NOW + 1), window(NOW - 3600), window(NOW - 60, consumer_key="ck-other")],
    ids=["not begun", "ended", "another integration's"],
)
def test_outside_its_window_or_integration_a_brownout_leaves_tba_alone(brownout: Brownout) -> None:
    assert tba(client_for(oauth2_settings(brownouts=[brownout]))).status_code == 200


def test_a_brownout_for_this_integration_refuses_it() -> None:
    response = tba(client_for(oauth2_settings(brownouts=[window(NOW, consumer_key=CONSUMER_KEY)])))
    assert response.json()["error"]["code"] == "TBABrownout"


def test_a_badly_signed_request_in_a_brownout_learns_only_that_its_signature_is_wrong() -> None:
    client = client_for(oauth2_settings(brownouts=[window(NOW - 60)]))
    response = tba(client, consumer_secret="cs-wrong-secret-for-this-test")
    assert response.json()["error"]["code"] == "InvalidSignature"


def test_an_integration_moved_to_oauth2_alone_refuses_tba_even_in_opaque_mode() -> None:
    moved = Integration(CONSUMER_KEY, CONSUMER_SECRET, client_id=CLIENT_ID, schemes=("oauth2",))
    client = client_for(oauth2_settings(integrations=[moved], error_detail="opaque"))
    response = tba(client)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "TBANotAllowed"
    assert bearer(client).status_code == 200


def test_brownouts_read_dates_with_offsets_and_epoch_seconds() -> None:
    from datetime import UTC, datetime

    settings = GuardSettings(
        brownouts=[
            {"start": "2027-03-01T14:00:00Z", "length": 3600},
            {"start": datetime(2027, 3, 2, tzinfo=UTC), "length": 60, "consumer_key": "ck"},
            {"start": 1_800_000_000, "length": 1.5},
        ]
    )
    assert settings.brownouts == (
        Brownout(1803909600.0, 3600.0),
        Brownout(1803945600.0, 60.0, "ck"),
        Brownout(1_800_000_000.0, 1.5),
    )
    assert GuardSettings(brownouts=settings.brownouts).brownouts == settings.brownouts


def test_brownouts_from_the_environment_are_json() -> None:
    environ = {
        "TBA_GUARD_BROWNOUTS": json.dumps([{"start": "2027-03-01T14:00:00+01:00", "length": 60}])
    }
    assert GuardSettings.from_env(environ).brownouts == (Brownout(1803906000.0, 60.0),)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            {"start": "2027-03-01T14:00:00", "length": 60},
            "brownouts[0].start: expected a date and time with its offset",
        ),
        ({"start": "next week", "length": 60}, "brownouts[0].start: expected a date and time like"),
        ({"start": 0, "length": 0}, "brownouts[0].length: expected a number >= 1"),
        ({"start": 0}, "brownouts[0]: expected start and length"),
        ({"start": 0, "length": 1, "who": "x"}, "brownouts[0]: unknown key 'who'"),
        ("soon", "brownouts[0]: expected a table"),
    ],
)
def test_a_bad_brownout_is_a_settings_error_naming_it(value: Any, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings(brownouts=[value])
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_brownouts_must_be_a_list() -> None:
    with pytest.raises(SettingsError, match="brownouts: expected a list of tables"):
        GuardSettings(brownouts="2027")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"schemes": ()}, "integrations[0].schemes: expected 'tba', 'oauth2' or both"),
        ({"schemes": ("tba", "saml")}, "integrations[0].schemes[1]"),
        ({"client_id": ""}, "integrations[0].client_id"),
    ],
)
def test_an_integrations_schemes_and_client_id_are_checked(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        GuardSettings(integrations=[{"consumer_key": "ck", "consumer_secret": "cs" * 8, **changes}])


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"oauth2_access_token_ttl": 3601}, "oauth2_access_token_ttl: at most 3600"),
        ({"oauth2_route_scopes": ["/x=everything"]}, "oauth2_route_scopes[0]"),
        ({"oauth2_route_scopes": ["x=restlets"]}, "oauth2_route_scopes[0]"),
        (
            {"oauth2_signing_keys": ["not a key"]},
            "oauth2_signing_keys[0]: expected a PEM private key",
        ),
        ({"oauth2_signing_keys": 3}, "oauth2_signing_keys: expected a PEM private key or a list"),
        (
            {
                "certificates": [
                    {
                        "certificate_id": "c",
                        "client_id": "x",
                        "entity": "1",
                        "role": "3",
                        "certificate": "pem",
                    }
                ]
            },
            "certificates[0].certificate: expected a PEM X.509 certificate",
        ),
        (
            {
                "certificates": [
                    {
                        "certificate_id": "c",
                        "client_id": "x",
                        "entity": 1,
                        "role": "3",
                        "certificate": "pem",
                    }
                ]
            },
            "certificates[0].entity",
        ),
        (
            {
                "certificates": [
                    {
                        "certificate_id": "c",
                        "client_id": "x",
                        "entity": "1",
                        "role": "3",
                        "certificate": "-----BEGIN CERTIFICATE-----",
                        "state": "gone",
                    }
                ]
            },
            "certificates[0].state",
        ),
    ],
)
def test_oauth2_settings_are_checked(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings(**changes)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_signing_keys_come_from_one_text_holding_several_as_a_secret_file_does(
    tmp_path: Any,
) -> None:
    from tests.support.oauth2 import ec_key, guard_key, private_pem

    both = private_pem(ec_key()) + private_pem(guard_key())
    path = tmp_path / "keys.pem"
    path.write_text(both)
    settings = GuardSettings.from_mapping({"oauth2_signing_keys_file": str(path)})
    assert len(settings.oauth2_signing_keys) == 2
    assert settings.oauth2_enabled
    assert "PRIVATE KEY" not in repr(settings)


# --- usage ----------------------------------------------------------------------------------------


class UsageStore(StaticCredentials):
    """The settings' credentials, plus the database's `flush_usage` boundary, recorded."""

    def __init__(self, settings: GuardSettings, *, fail: int = 0) -> None:
        super().__init__(settings.integrations, settings.tokens, settings.certificates)
        self.batches: list[dict[Any, tuple[int, float]]] = []
        self.fail = fail

    async def flush_usage(self, counts: UsageBatch) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database down")
        self.batches.append(dict(counts))


def test_accepted_requests_are_counted_per_integration_token_and_scheme() -> None:
    settings = oauth2_settings(usage_flush_interval=0)
    store = UsageStore(settings)
    clock = Clock()
    client = client_for(settings, Guard(settings, credentials=store, clock=clock))
    with client:
        assert tba(client).status_code == 200
        assert tba(client).status_code == 200
        assert bearer(client).status_code == 200
        tba(client, consumer_secret="cs-wrong-secret-for-this-test")  # refused: not counted
    totals: dict[Any, int] = {}
    for batch in store.batches:
        for key, (count, last) in batch.items():
            totals[key] = totals.get(key, 0) + count
            assert last == NOW
    assert totals == {
        (CONSUMER_KEY, TOKEN_ID, "tba"): 2,
        (CONSUMER_KEY, RSA_CERTIFICATE_ID, "oauth2"): 1,
    }


def test_counts_are_batched_per_interval_and_written_at_shutdown() -> None:
    settings = oauth2_settings(usage_flush_interval=60)
    store = UsageStore(settings)
    guard = Guard(settings, credentials=store, clock=Clock())
    with client_for(settings, guard) as client:
        for _ in range(3):
            assert tba(client).status_code == 200
        assert store.batches == []  # within the interval: nothing written yet
    assert store.batches == [{(CONSUMER_KEY, TOKEN_ID, "tba"): (3, NOW)}]


async def test_a_failed_write_keeps_its_counts_for_the_next() -> None:
    written: list[dict[Any, tuple[int, float]]] = []
    failures = [ConnectionError("down")]

    async def flush(batch: UsageBatch) -> None:
        if failures:
            raise failures.pop()
        written.append(dict(batch))

    clock = Clock()
    counts = UsageCounts(flush, interval=0, clock=clock)
    counts.count("ck", "tk", "tba", NOW)
    await asyncio.sleep(0)  # the write fails
    counts.count("ck", "tk", "tba", NOW + 5)
    await counts.drain()
    assert written == [{("ck", "tk", "tba"): (2, NOW + 5)}]
    await counts.drain()  # nothing left: no empty write
    assert len(written) == 1


def test_a_store_without_usage_keeps_no_counts() -> None:
    assert Guard(oauth2_settings()).usage is None


def test_the_plain_middleware_writes_the_counts_at_shutdown_too() -> None:
    settings = oauth2_settings(usage_flush_interval=3600)
    store = UsageStore(settings)
    app = TBAGuardMiddleware(
        Starlette(routes=[Route("/{p:path}", ok)]),
        guard=Guard(settings, credentials=store, clock=Clock()),
    )
    with TestClient(app, base_url=BASE_URL) as client:
        assert tba(client).status_code == 200
    assert store.batches == [{(CONSUMER_KEY, TOKEN_ID, "tba"): (1, NOW)}]
