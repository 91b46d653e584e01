"""The flow's realm and callback rules where the guard has no realm configured.

With no realm in the settings, the request token belongs to the realm sent at step one; step
three must then send that realm or none, and a resource call with the issued token is bound to
it in the same way. A callback with a hidden control character or over 2048 characters is
refused at step one, before any token exists. And where two deployments with realms of their
own share one token store, a request token stays with the account it was issued for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tba_guard.stores.memory import MemoryTokenStore
from tests.support import (
    Clock,
    FlowClient,
    assert_error,
    client_for,
    echo_app,
    flow_settings,
    form,
)

FIRST, SECOND = "111111_SB1", "222222_SB1"


@pytest.fixture
async def unbound(clock: Clock) -> AsyncIterator[FlowClient]:
    """A flow whose settings name no realm."""
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(realm=None), clock=clock))
    async for client in client_for(flow):
        yield client


async def consented_under(fc: FlowClient, realm: str | None) -> tuple[str, str, str]:
    token_id, secret = await fc.new_request_token(realm=realm)
    verifier = (await fc.authorize(token_id))["oauth_verifier"]
    return token_id, secret, verifier


async def test_a_request_token_obtained_for_one_realm_is_refused_under_another(
    unbound: FlowClient,
) -> None:
    token_id, secret, verifier = await consented_under(unbound, FIRST)
    response = await unbound.access_token(token_id, secret, verifier, realm=SECOND)
    assert_error(response, "TokenRejected", 401, "token_rejected")
    # The refusal did not use the token up: under its own realm it is still exchanged.
    issued = form(await unbound.access_token(token_id, secret, verifier, realm=FIRST))
    assert issued["oauth_token"]


async def test_a_request_token_obtained_for_one_realm_is_exchanged_without_a_realm(
    unbound: FlowClient,
) -> None:
    token_id, secret, verifier = await consented_under(unbound, FIRST)
    issued = form(await unbound.access_token(token_id, secret, verifier, realm=None))
    assert issued["oauth_token"]


async def test_a_request_token_obtained_without_a_realm_is_exchanged_under_any(
    unbound: FlowClient,
) -> None:
    token_id, secret, verifier = await consented_under(unbound, None)
    issued = form(await unbound.access_token(token_id, secret, verifier, realm=SECOND))
    assert issued["oauth_token"]


@pytest.mark.parametrize("byte", [*range(0x01, 0x21), 0x7F])
async def test_a_callback_with_a_control_character_or_space_is_refused_at_step_one(
    fc: FlowClient, byte: int
) -> None:
    response = await fc.request_token(callback=f"http://local{chr(byte)}host:9/cb")
    assert_error(response, "InvalidCallback", 400)


async def test_a_callback_with_a_nul_is_refused_by_the_header_parser(fc: FlowClient) -> None:
    """An escaped NUL never reaches the callback check: the header itself is refused."""
    response = await fc.request_token(callback="http://local\x00host:9/cb")
    assert_error(response, "MissingRequiredParameter", 400)


async def test_a_callback_over_2048_characters_is_refused_at_step_one(fc: FlowClient) -> None:
    prefix = "http://localhost:9/"
    at_limit = prefix + "a" * (2048 - len(prefix))
    assert form(await fc.request_token(callback=at_limit))["oauth_token"]
    response = await fc.request_token(callback=at_limit + "a")
    assert_error(response, "InvalidCallback", 400)


async def test_a_shared_store_s_request_token_of_another_account_is_refused_without_a_realm(
    clock: Clock,
) -> None:
    """Two deployments, two accounts, one token store: a token consented to on one is not
    exchanged on the other, even when step three sends no realm to compare."""
    tokens = MemoryTokenStore(clock=clock)
    first = TBAFlow(echo_app(), guard=Guard(flow_settings(realm=FIRST), clock=clock), tokens=tokens)
    second = TBAFlow(
        echo_app(), guard=Guard(flow_settings(realm=SECOND), clock=clock), tokens=tokens
    )
    async for on_first in client_for(first):
        token_id, secret, verifier = await consented_under(on_first, FIRST)
    async for on_second in client_for(second):
        response = await on_second.access_token(token_id, secret, verifier, realm=None)
        assert_error(response, "TokenRejected", 401, "token_rejected")
    async for on_first in client_for(first):  # not used up: its own account still takes it
        issued = form(await on_first.access_token(token_id, secret, verifier, realm=None))
        assert issued["oauth_token"]
