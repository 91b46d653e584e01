"""Stores that answer at once (`seen_now`, `claim_signed_now`, `integration_now`, `token_now`):
the guard calls them without awaiting, keeps an override of the awaitable method called, and
fails closed when one raises."""

from __future__ import annotations

import pytest

from tba_guard import CachedCredentials, ErrorCode, Guard, ReplayKey, TBAError
from tba_guard.core.checks import immediacy
from tba_guard.core.records import Integration, Token
from tba_guard.stores.memory import MemoryReplayStore, StaticCredentials
from tba_guard.stores.redis_replay import RedisReplayStore
from tests.support import BASE_URL, Clock, make_settings, oauth_header

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"


class NeverAwaitedReplay(MemoryReplayStore):
    """Answers at once; awaited, it fails the test."""

    async def seen(self, key: ReplayKey) -> bool:
        raise AssertionError("seen awaited")

    def seen_now(self, key: ReplayKey) -> bool:
        return super().seen_now(key)

    async def claim_signed(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        raise AssertionError("claim_signed awaited")

    def claim_signed_now(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        return super().claim_signed_now(key, ttl, signature)


class NeverAwaitedCredentials(StaticCredentials):
    async def integration(self, consumer_key: str) -> Integration | None:
        raise AssertionError("integration awaited")

    def integration_now(self, consumer_key: str) -> Integration | None:
        return super().integration_now(consumer_key)

    async def token(self, token_id: str) -> Token | None:
        raise AssertionError("token awaited")

    def token_now(self, token_id: str) -> Token | None:
        return super().token_now(token_id)


class SeenOverridden(MemoryReplayStore):
    """Overrides the awaitable `seen` alone, as a subclass written before `seen_now` did."""

    async def seen(self, key: ReplayKey) -> bool:
        return True


class TokenOverridden(StaticCredentials):
    async def token(self, token_id: str) -> Token | None:
        return None


def guard_over(**stores: object) -> Guard:
    settings = make_settings()
    credentials = stores.pop("credentials", None)
    if credentials is None:
        credentials = StaticCredentials(settings.integrations, settings.tokens)
    elif isinstance(credentials, type):
        credentials = credentials(settings.integrations, settings.tokens)
    replay = stores.pop("replay_store", None)  # `is None`: an empty store is falsy
    if replay is None:
        replay = MemoryReplayStore(clock=Clock())
    return Guard(settings, clock=Clock(), credentials=credentials, replay_store=replay)  # type: ignore[arg-type]


async def verify(guard: Guard, nonce: str = "nonce-immediate-0001") -> str:
    """The code the guard answers one signed GET with ("" when accepted)."""
    header = oauth_header("GET", URL, nonce=nonce)
    try:
        await guard.verify_request("GET", URL, {"Authorization": header})
    except TBAError as error:
        return error.code
    return ""


def test_the_stores_in_memory_answer_at_once_and_the_others_are_awaited() -> None:
    replay, static = immediacy(MemoryReplayStore()), immediacy(StaticCredentials())
    assert (replay.seen, replay.claim_signed) == (True, True)
    assert (static.integration, static.token) == (True, True)
    redis = immediacy(RedisReplayStore("redis://127.0.0.1:1"))
    assert (redis.seen, redis.claim_signed) == (False, False)
    cached = immediacy(CachedCredentials(StaticCredentials()))  # a miss must await its store
    assert (cached.integration, cached.token) == (False, False)


def test_an_override_of_the_awaitable_method_alone_turns_that_call_back_to_awaiting() -> None:
    assert not immediacy(SeenOverridden()).seen
    assert immediacy(SeenOverridden()).claim_signed  # what it did not override stays at once
    assert not immediacy(TokenOverridden()).token
    assert immediacy(TokenOverridden()).integration


async def test_the_guard_verifies_through_stores_that_answer_at_once_without_awaiting() -> None:
    guard = guard_over(credentials=NeverAwaitedCredentials, replay_store=NeverAwaitedReplay())
    assert await verify(guard) == ""
    assert await verify(guard) == ErrorCode.NONCE_USED  # claimed at once, then seen at once


async def test_the_guard_awaits_an_overridden_awaitable_method() -> None:
    assert await verify(guard_over(replay_store=SeenOverridden())) == ErrorCode.NONCE_USED
    assert await verify(guard_over(credentials=TokenOverridden)) == ErrorCode.TOKEN_REJECTED


class FailingAtOnce(NeverAwaitedReplay):
    failing = ""

    def seen_now(self, key: ReplayKey) -> bool:
        if self.failing == "seen":
            raise ConnectionError("gone")
        return super().seen_now(key)

    def claim_signed_now(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        if self.failing == "claim":
            raise ConnectionError("gone")
        return super().claim_signed_now(key, ttl, signature)


class CredentialsFailingAtOnce(NeverAwaitedCredentials):
    failing = ""

    def integration_now(self, consumer_key: str) -> Integration | None:
        if self.failing == "integration":
            raise ConnectionError("gone")
        return super().integration_now(consumer_key)

    def token_now(self, token_id: str) -> Token | None:
        if self.failing == "token":
            raise ConnectionError("gone")
        return super().token_now(token_id)


@pytest.mark.parametrize(
    ("failing", "code"),
    [
        ("seen", ErrorCode.REPLAY_STORE_UNAVAILABLE),
        ("claim", ErrorCode.REPLAY_STORE_UNAVAILABLE),
        ("integration", ErrorCode.CREDENTIAL_STORE_UNAVAILABLE),
        ("token", ErrorCode.CREDENTIAL_STORE_UNAVAILABLE),
    ],
)
async def test_a_store_failing_at_once_fails_closed_with_its_code(
    failing: str, code: ErrorCode
) -> None:
    settings = make_settings()
    replay, credentials = (
        FailingAtOnce(clock=Clock()),
        CredentialsFailingAtOnce(settings.integrations, settings.tokens),
    )
    replay.failing = credentials.failing = failing
    assert await verify(guard_over(credentials=credentials, replay_store=replay)) == code


class ClaimedMeanwhile(NeverAwaitedReplay):
    """Sees nothing, as when another request claims the key between the read and the claim."""

    def seen_now(self, key: ReplayKey) -> bool:
        return False


async def test_a_key_claimed_meanwhile_is_refused_at_the_claim_made_at_once() -> None:
    guard = guard_over(replay_store=ClaimedMeanwhile(clock=Clock()))
    assert await verify(guard) == ""
    assert await verify(guard) == ErrorCode.NONCE_USED
