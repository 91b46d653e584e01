"""A store or directory that fails during the flow's access-token step fails closed: 503
CredentialStoreUnavailable with Retry-After, never a 500 and never a token."""

from __future__ import annotations

import httpx2 as httpx

from tba_guard import AuditEvent, Guard, User
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.protocols import TokenStoreError
from tba_guard.core.records import RequestToken
from tba_guard.stores.memory import MemoryTokenStore
from tests.support import ALICE, Clock, FlowClient, client_for, echo_app, flow_settings


class BreakableTokens(MemoryTokenStore):
    """The in-process token store, with the named operations failing once `broken` names them,
    as a token store whose connection is lost part way through the flow."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.broken: set[str] = set()

    def _fail(self, operation: str) -> None:
        if operation in self.broken:
            raise TokenStoreError(f"token store down during {operation}")

    async def request_token(self, token_id: str) -> RequestToken | None:
        self._fail("request_token")
        return await super().request_token(token_id)

    async def consume(self, token_id: str) -> bool:
        self._fail("consume")
        return await super().consume(token_id)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "CredentialStoreUnavailable"
    assert response.headers["retry-after"]


async def test_a_token_store_failing_on_the_request_token_lookup_is_503(clock: Clock) -> None:
    tokens = BreakableTokens(clock)
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock), tokens=tokens)
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        tokens.broken.add("request_token")
        assert_unavailable(await fc.access_token(token_id, secret, verifier))


async def test_the_audit_log_names_the_token_store_as_what_failed(clock: Clock) -> None:
    tokens = BreakableTokens(clock)
    events: list[AuditEvent] = []
    flow = TBAFlow(
        echo_app(),
        guard=Guard(flow_settings(), clock=clock, audit_hooks=[events.append]),
        tokens=tokens,
    )
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        tokens.broken.add("request_token")
        assert_unavailable(await fc.access_token(token_id, secret, verifier))
    assert events[-1].code == "CredentialStoreUnavailable"
    assert events[-1].reason == (
        "token store failed: TokenStoreError: token store down during request_token"
    )


async def test_a_token_store_failing_to_burn_a_wrongly_verified_token_is_503(
    clock: Clock,
) -> None:
    tokens = BreakableTokens(clock)
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock), tokens=tokens)
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        tokens.broken.add("consume")
        assert_unavailable(await fc.access_token(token_id, secret, "0" * 64))
        tokens.broken.clear()
        # Not burned, since the store failed: the right verifier still gets the token.
        answer = await fc.access_token(token_id, secret, verifier)
        assert answer.status_code == 200, answer.text


async def test_a_user_directory_failing_at_the_access_token_step_is_503(clock: Clock) -> None:
    failing = False

    async def lookup(entity: str) -> User | None:
        if failing:
            raise ConnectionError("directory down")
        return ALICE if entity == ALICE.entity else None

    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock), user_lookup=lookup)
    fc: FlowClient
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        failing = True
        assert_unavailable(await fc.access_token(token_id, secret, verifier))


async def test_the_audit_log_names_the_user_directory_as_what_failed(clock: Clock) -> None:
    # An operator paged at 3 a.m. must see which store to look at, not "credential store".
    failing = False
    events: list[AuditEvent] = []

    async def lookup(entity: str) -> User | None:
        if failing:
            raise ConnectionError("directory down")
        return ALICE if entity == ALICE.entity else None

    flow = TBAFlow(
        echo_app(),
        guard=Guard(flow_settings(), clock=clock, audit_hooks=[events.append]),
        user_lookup=lookup,
    )
    fc: FlowClient
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        failing = True
        assert_unavailable(await fc.access_token(token_id, secret, verifier))
    assert events[-1].code == "CredentialStoreUnavailable"
    assert events[-1].reason == "user lookup failed: ConnectionError: directory down"
