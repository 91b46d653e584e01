"""The public surface, in whichever build `make test` runs: what `tba_guard` exports, what users
may subclass (the compiled build too), and signatures and docstrings readable at run time."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from starlette.testclient import TestClient

import tba_guard
from tba_guard import (
    CachedCredentials,
    Guard,
    Identity,
    Integration,
    MemoryReplayStore,
    MemoryTokenStore,
    ReplayKey,
    StaticCredentials,
    TBAError,
    TBAGuardMiddleware,
    Token,
    User,
)
from tests.support import BASE_URL, NOW, TOKEN_ID, Clock, echo_app, make_settings, oauth_header

#: Type aliases (no run-time signature of their own) and enums (called with a value).
ALIASES_AND_ENUMS = frozenset({"OnError", "ErrorCode", "Step"})
RESOURCE = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"


def signed_get() -> dict[str, str]:
    return {"Authorization": oauth_header("GET", RESOURCE)}


def test_every_exported_name_exists_and_all_is_sorted() -> None:
    assert tba_guard.__all__ == sorted(tba_guard.__all__)
    for name in tba_guard.__all__:
        assert getattr(tba_guard, name) is not None, name


@pytest.mark.parametrize("name", tba_guard.__all__)
def test_every_public_callable_has_a_readable_signature(name: str) -> None:
    exported = getattr(tba_guard, name)
    if not (isinstance(exported, type) or callable(exported)) or name in ALIASES_AND_ENUMS:
        return
    is_error = isinstance(exported, type) and issubclass(exported, Exception)
    if is_error and "__init__" not in vars(exported):  # the message alone, as Exception's
        return
    signature = inspect.signature(exported)
    assert all(p.name for p in signature.parameters.values())


@pytest.mark.parametrize("name", tba_guard.__all__)
def test_every_public_class_and_function_has_a_docstring(name: str) -> None:
    exported = getattr(tba_guard, name)
    if name not in ALIASES_AND_ENUMS - {"ErrorCode", "Step"}:
        assert (exported.__doc__ or "").strip(), f"{name} has no docstring at run time"


async def test_a_replay_store_subclass_is_the_one_the_guard_claims_with() -> None:
    claimed: list[ReplayKey] = []

    class CountingStore(MemoryReplayStore):
        async def claim(self, key: ReplayKey, ttl: int) -> bool:
            claimed.append(key)
            return await super().claim(key, ttl)

    guard = Guard(make_settings(), replay_store=CountingStore(clock=Clock()), clock=Clock())
    identity = await guard.verify_request("GET", RESOURCE, signed_get())
    assert identity.token_id == TOKEN_ID
    assert len(claimed) == 1


async def test_credential_store_subclasses_answer_for_the_guard() -> None:
    settings = make_settings()

    class Blocking(StaticCredentials):
        async def integration(self, consumer_key: str) -> Integration | None:
            found = await super().integration(consumer_key)
            return dataclasses.replace(found, state="blocked") if found else None

    guard = Guard(settings, credentials=Blocking(settings.integrations, settings.tokens))
    with pytest.raises(TBAError) as raised:
        await Guard(settings, credentials=guard.credentials, clock=Clock()).verify_request(
            "GET", RESOURCE, signed_get()
        )
    assert raised.value.code.value == "IntegrationBlocked"

    looked_up: list[str] = []

    class Cached(CachedCredentials):
        async def token(self, token_id: str) -> Token | None:
            looked_up.append(token_id)
            return await super().token(token_id)

    cached = Cached(StaticCredentials(settings.integrations, settings.tokens), ttl=5)
    await Guard(settings, credentials=cached, clock=Clock()).verify_request(
        "GET", RESOURCE, signed_get()
    )
    assert looked_up == [TOKEN_ID]


async def test_a_guard_subclass_runs_its_own_audit() -> None:
    heard: list[str] = []

    class Auditing(Guard):
        def audit(self, request: Any, error: TBAError | None) -> None:
            heard.append("rejected" if error else "accepted")
            super().audit(request, error)

    await Auditing(make_settings(), clock=Clock()).verify_request("GET", RESOURCE, signed_get())
    assert heard == ["accepted"]


def test_a_middleware_subclass_is_the_one_that_serves() -> None:
    exempted: list[str] = []

    class Exempting(TBAGuardMiddleware):
        def is_exempt(self, scope: Any) -> bool:
            exempted.append(scope["path"])
            return scope["path"] == "/health" or super().is_exempt(scope)

    app = Exempting(echo_app(), settings=make_settings(), clock=Clock())
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/private").status_code == 401
    assert exempted == ["/health", "/private"]


def test_record_subclasses_are_records() -> None:
    @dataclasses.dataclass(frozen=True, repr=False)  # keeps Token's repr, which hides the secret
    class TaggedToken(Token):
        tag: str = ""

    token = TaggedToken("tk", "ts-secret-long-enough", "ck", tag="imported")
    assert (token.token_id, token.tag) == ("tk", "imported")
    assert "ts-secret" not in repr(token)

    class Admin(User):
        def may_use(self, role: str) -> bool:
            return True

    assert Admin("e1", "Ada").may_use("Administrator")

    class Named(Identity):
        def label(self) -> str:
            return f"{self.entity}@{self.realm}"

    assert Named("ck", "tk", "123", "e1", "r1").label() == "e1@123"

    class Quiet(MemoryTokenStore):
        pass

    assert isinstance(Quiet(), MemoryTokenStore)
    assert NOW > 0
