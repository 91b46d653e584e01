"""Fixtures of the authorization flow's tests: a flow on the suite's settings and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tests.support import (
    Clock,
    FlowClient,
    client_for,
    echo_app,
    flow_settings,
)


@pytest.fixture
def flow(clock: Clock) -> TBAFlow:
    return TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock))


@pytest.fixture
async def fc(flow: TBAFlow) -> AsyncIterator[FlowClient]:
    async for client in client_for(flow):
        yield client
