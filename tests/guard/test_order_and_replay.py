"""The order of checks (the earlier check's code wins) and replay protection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tba_guard import ErrorCode, Guard, MemoryReplayStore, ReplayKey, TBAError
from tests.support import BASE_URL, NOW, Clock, fresh_nonce, make_settings, oauth_header

URL = f"{BASE_URL}/services/rest/record/v1/customer?limit=5"


class RecordingStore:
    """A spy around the real in-process store: records which calls reached it."""

    def __init__(self, clock: Clock) -> None:
        self.inner = MemoryReplayStore(clock=clock)
        self.calls: list[str] = []

    async def seen(self, key: ReplayKey) -> bool:
        self.calls.append("seen")
        return await self.inner.seen(key)

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        self.calls.append("claim")
        return await self.inner.claim(key, ttl)


@pytest.fixture
def store(clock: Clock) -> RecordingStore:
    return RecordingStore(clock)


@pytest.fixture
def guard(clock: Clock, store: RecordingStore) -> Guard:
    settings = make_settings(signature_methods=["HMAC-SHA256"])
    return Guard(settings, clock=clock, replay_store=store)


async def code_of(guard: Guard, header: str | None, **kwargs: Any) -> ErrorCode | None:
    headers = {"Authorization": header} if header is not None else {}
    try:
        await guard.verify_request("GET", URL, headers, **kwargs)
    except TBAError as error:
        return error.code
    return None


async def test_feature_switch_comes_before_everything(clock: Clock) -> None:
    guard = Guard(make_settings(feature_enabled=False), clock=clock)
    assert await code_of(guard, None) is ErrorCode.FEATURE_DISABLED
    assert await code_of(guard, "Bearer x") is ErrorCode.FEATURE_DISABLED


@pytest.mark.parametrize(
    ("bends", "expected"),
    [
        ({"drop": ("oauth_nonce",), "version": "2.0"}, ErrorCode.MISSING_REQUIRED_PARAMETER),
        ({"version": "2.0", "signature": "bad"}, ErrorCode.VERSION_REJECTED),
        ({"version": "2.0", "signature_method": "HMAC-SHA1"}, ErrorCode.VERSION_REJECTED),
        ({"signature_method": "HMAC-SHA1", "timestamp": 5}, ErrorCode.UNKNOWN_ALGORITHM),
        ({"timestamp": NOW - 1000, "nonce": "abc"}, ErrorCode.INVALID_TIMESTAMP),
        ({"timestamp": NOW + 1000, "signature": "bad"}, ErrorCode.INVALID_TIMESTAMP),
        ({"nonce": "abc", "consumer_key": "ck-nobody"}, ErrorCode.NONCE_REJECTED),
        ({"consumer_key": "ck-nobody", "token": "tk-nobody"}, ErrorCode.UNKNOWN_INTEGRATION),
        (
            {
                "consumer_key": "ck-blocked",
                "consumer_secret": "cs-blocked-integration",
                "token": "tk-nobody",
            },
            ErrorCode.INTEGRATION_BLOCKED,
        ),
        ({"token": "tk-nobody", "signature": "bad"}, ErrorCode.TOKEN_REJECTED),
        (
            {"token": "tk-revoked", "token_secret": "ts-revoked-token-secret", "signature": "bad"},
            ErrorCode.TOKEN_REJECTED,
        ),
        ({"token": "tk-inactive", "signature": "bad"}, ErrorCode.ENTITY_OR_ROLE_DISABLED),
        ({"signature": "bad"}, ErrorCode.INVALID_SIGNATURE),
    ],
)
async def test_the_earlier_check_wins(
    guard: Guard, bends: dict[str, Any], expected: ErrorCode
) -> None:
    assert await code_of(guard, oauth_header("GET", URL, **bends)) is expected


async def test_used_nonce_wins_over_a_bad_signature(guard: Guard) -> None:
    nonce = fresh_nonce()
    assert await code_of(guard, oauth_header("GET", URL, nonce=nonce)) is None
    forged = oauth_header("GET", URL, nonce=nonce, signature="bad")
    assert await code_of(guard, forged) is ErrorCode.NONCE_USED


async def test_bad_signature_does_not_burn_the_nonce(guard: Guard) -> None:
    nonce = fresh_nonce()
    forged = oauth_header("GET", URL, nonce=nonce, token_secret="guessed")
    assert await code_of(guard, forged) is ErrorCode.INVALID_SIGNATURE
    assert await code_of(guard, oauth_header("GET", URL, nonce=nonce)) is None


async def test_replayed_request_is_nonce_used(guard: Guard) -> None:
    header = oauth_header("GET", URL)
    assert await code_of(guard, header) is None
    assert await code_of(guard, header) is ErrorCode.NONCE_USED


async def test_same_nonce_with_another_timestamp_is_accepted(guard: Guard) -> None:
    nonce = fresh_nonce()
    assert await code_of(guard, oauth_header("GET", URL, nonce=nonce)) is None
    assert await code_of(guard, oauth_header("GET", URL, nonce=nonce, timestamp=NOW + 1)) is None


async def test_same_nonce_for_another_token_is_accepted(guard: Guard) -> None:
    nonce = fresh_nonce()
    assert await code_of(guard, oauth_header("GET", URL, nonce=nonce)) is None
    bob = oauth_header("GET", URL, nonce=nonce, token="tk-bob", token_secret="ts-bob-token-secret")
    assert await code_of(guard, bob) is None


async def test_malformed_requests_never_reach_the_replay_store(
    guard: Guard, store: RecordingStore
) -> None:
    for bends, code in (
        ({"drop": ("oauth_nonce",)}, ErrorCode.MISSING_REQUIRED_PARAMETER),
        ({"version": "9"}, ErrorCode.VERSION_REJECTED),
        ({"signature_method": "PLAINTEXT"}, ErrorCode.UNKNOWN_ALGORITHM),
        ({"timestamp": 1}, ErrorCode.INVALID_TIMESTAMP),
        ({"nonce": "abc"}, ErrorCode.NONCE_REJECTED),
    ):
        assert await code_of(guard, oauth_header("GET", URL, **bends)) == code, bends
    assert store.calls == []


async def test_only_a_verified_request_writes_to_the_replay_store(
    guard: Guard, store: RecordingStore
) -> None:
    for bends, code in (
        ({"consumer_key": "ck-nobody"}, ErrorCode.UNKNOWN_INTEGRATION),
        ({"token": "tk-nobody"}, ErrorCode.TOKEN_REJECTED),
        ({"token": "tk-inactive"}, ErrorCode.ENTITY_OR_ROLE_DISABLED),
        ({"signature": "bad"}, ErrorCode.INVALID_SIGNATURE),
    ):
        assert await code_of(guard, oauth_header("GET", URL, **bends)) == code, bends
    assert "claim" not in store.calls
    assert len(store.inner) == 0
    assert await code_of(guard, oauth_header("GET", URL)) is None
    assert store.calls[-2:] == ["seen", "claim"]
    assert len(store.inner) == 1


async def test_concurrent_copies_of_one_request_are_accepted_once(guard: Guard) -> None:
    header = oauth_header("GET", URL)
    codes = await asyncio.gather(*(code_of(guard, header) for _ in range(20)))
    assert codes.count(None) == 1
    assert codes.count(ErrorCode.NONCE_USED) == 19


async def test_a_key_is_remembered_until_its_timestamp_cannot_pass(clock: Clock) -> None:
    guard = Guard(make_settings(timestamp_tolerance=300), clock=clock)
    header = oauth_header("GET", URL, timestamp=NOW + 300)
    assert await code_of(guard, header) is None
    clock.now = NOW + 599  # the timestamp is still inside the window: the key must be known
    assert await code_of(guard, header) is ErrorCode.NONCE_USED
    clock.now = NOW + 601  # outside the window: the timestamp check refuses it anyway
    assert await code_of(guard, header) is ErrorCode.INVALID_TIMESTAMP
