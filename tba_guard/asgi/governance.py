"""Concurrency governance as NetSuite's: how many verified requests the account serves at once.

A verified request takes a slot of its pool before the application sees it and gives it back
when its response ends or the application returns (a client that went away included). An
integration with an allocation has a pool of its own; the others share what is left. Over the
limit, a RESTlet answers `SSS_REQUEST_LIMIT_EXCEEDED` (400) and REST web services 429, both with
`Retry-After`. Each worker renews its leases every third of `governance_lease`, so the slots of
a worker that died come free within one lease. A credential database's allocations are read
at the first request and again once older than `credential_cache_ttl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import ErrorCode, ErrorResponse, TBAError, error_response
from ..core.protocols import CredentialStore
from ..core.records import Identity, Integration
from ..core.request import OAuthRequest
from ..core.settings import GovernanceSettings, GuardSettings
from ..guard import Verifying
from ..stores import needs_extra
from ..stores.governance import MemorySlotStore, SlotStore, SlotStoreError

RESTLET_PATH = "/app/site/hosting/restlet.nl"
GOVERNANCE_LIMITS_PATH = "/services/rest/system/v1/governanceLimits"
#: The pool of the integrations without an allocation.
UNALLOCATED = "unallocated"

#: Records the refusal in the audit log: the guard's `audit`.
Audit = Callable[[OAuthRequest, TBAError], None]
#: A credential store's allocations, consumer key -> slots (the database's
#: `concurrency_allocations`).
LoadAllocations = Callable[[], Awaitable[Mapping[str, int]]]

logger = logging.getLogger("tba_guard.governance")


def slot_store_for(settings: GovernanceSettings) -> SlotStore:
    """The store the settings name: `memory` (one process) or a Redis URL."""
    if settings.governance_store == "memory":
        return MemorySlotStore()
    with needs_extra("the Redis governance store"):
        from ..stores.redis_governance import RedisSlotStore

    return RedisSlotStore.from_settings(settings)


def allocations_of(settings: GuardSettings) -> dict[str, int]:
    """Slots reserved per consumer key: the `[[integrations]]` records' `concurrency_limit`,
    with `governance_allocations` over them."""
    allocated = {
        record.consumer_key: record.concurrency_limit
        for record in settings.integrations
        if record.concurrency_limit is not None
    }
    for entry in settings.governance_allocations:
        consumer_key, _, slots = entry.rpartition("=")
        allocated[consumer_key] = int(slots)
    return allocated


def allocations_loader(credentials: CredentialStore | None) -> LoadAllocations | None:
    """The store's `concurrency_allocations`, or that of the store it wraps (`base`: the flow's
    credentials over the database). By method, not isinstance: the compiled build checks no
    Protocol at run time."""
    for store in (credentials, getattr(credentials, "base", None)):
        load: LoadAllocations | None = getattr(store, "concurrency_allocations", None)
        if load is not None:
            return load
    return None


class Governance:
    """The account's slots, for one middleware: the pools, the leases this process holds and
    their renewal, the refusal per surface, and `governanceLimits`.

    `allocations` stand for the settings' (`allocations_of`); a `credentials` store that keeps
    allocations of its own (`concurrency_allocations`) adds them, under these. `clock` times
    their reload (monotonic seconds).
    """

    def __init__(
        self,
        settings: GuardSettings,
        audit: Audit,
        *,
        credentials: CredentialStore | None = None,
        slots: SlotStore | None = None,
        allocations: Mapping[str, int] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.slots = slot_store_for(settings) if slots is None else slots
        self.limit = settings.governance_limit
        self.configured = dict(allocations_of(settings) if allocations is None else allocations)
        self.allocations: dict[str, int] = {}  # both set by `_allocate`, declared for mypyc
        self.unallocated = self.limit
        self._allocate({})  # the settings' alone, until the store's are read
        self._load = allocations_loader(credentials)
        self._clock = time.monotonic if clock is None else clock
        self._loaded_until = float("-inf")  # the first request loads them
        self._load_failing = False
        self.lease = settings.governance_lease
        self.held: dict[str, str] = {}  # lease id -> pool, of this process's requests
        # Lease IDs unique across workers and hosts: a random prefix, then a counter (no
        # system call for randomness per request).
        self._lease_prefix = secrets.token_hex(8) + ":"
        self._leases = itertools.count()
        self._renewing: asyncio.Task[None] | None = None

    def _allocate(self, stored: Mapping[str, int]) -> None:
        """The store's allocations with the settings' over them, and what is left to share."""
        self.allocations = {**stored, **self.configured}
        self.unallocated = max(self.limit - sum(self.allocations.values()), 1)

    async def reload_allocations(self) -> None:
        """Read the store's allocations again. A store that fails leaves the previous ones in
        force until the next try, a TTL later, and is logged once until it answers again."""
        assert self._load is not None
        started = self._clock()
        try:
            stored = await self._load()
        except Exception as unreadable:  # the database down: counting goes on as it was
            if not self._load_failing:
                self._load_failing = True
                logger.warning(
                    "governance: the credential store's concurrency allocations could not be "
                    "read (%s); the previous ones stay until it answers",
                    unreadable,
                )
        else:
            self._load_failing = False
            self._allocate(stored)
        self._loaded_until = started + self.settings.effective_credential_cache_ttl

    def pool_for(self, consumer_key: str, integration: Integration | None) -> tuple[str, int]:
        """The pool a request counts in and its size."""
        slots = self.allocations.get(consumer_key)
        if slots is None and integration is not None:
            slots = integration.concurrency_limit
        if slots is None:
            return UNALLOCATED, self.unallocated
        return "integration:" + consumer_key, slots

    def limits_document(self, consumer_key: str, integration: Integration | None) -> bytes:
        """`GET /services/rest/system/v1/governanceLimits`, for the caller's integration."""
        pool, slots = self.pool_for(consumer_key, integration)
        document: dict[str, object] = {
            "accountConcurrencyLimit": self.limit,
            "accountUnallocatedConcurrencyLimit": self.unallocated,
        }
        if pool != UNALLOCATED:
            document["integrationConcurrencyLimit"] = slots
            document["limitType"] = "integrationSpecific"
        else:
            document["limitType"] = "unallocated" if self.allocations else "account"
        return json.dumps(document).encode()

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        verified: Verifying,
        identity: Identity,
    ) -> None:
        """Run `app` for a verified request (who `identity` is) inside a slot, or refuse it."""
        if self._load is not None and self._clock() >= self._loaded_until:
            await self.reload_allocations()
        request, consumer_key = verified.request, identity.consumer_key
        integration = verified.verification.integration if verified.verification else None
        if scope["path"] == GOVERNANCE_LIMITS_PATH and scope["method"] == "GET":
            body = self.limits_document(consumer_key, integration)
            headers = [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode()),
            ]
            await _send(send, 200, headers, body)
            return
        pool, slots = self.pool_for(consumer_key, integration)
        lease_id = f"{self._lease_prefix}{next(self._leases)}"
        try:
            taken = await self.slots.acquire(pool, slots, lease_id, self.lease)
        except SlotStoreError as unavailable:
            why = str(unavailable)
            await self.refuse(send, request, ErrorCode.GOVERNANCE_STORE_UNAVAILABLE, why)
            return
        if not taken:
            code = (
                ErrorCode.REQUEST_LIMIT_EXCEEDED
                if scope["path"].startswith(RESTLET_PATH)
                else ErrorCode.CONCURRENCY_LIMIT_EXCEEDED
            )
            await self.refuse(send, request, code, f"{slots} of {slots} slots in flight ({pool})")
            return
        self.held[lease_id] = pool
        self._keep_renewing()
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.held.pop(lease_id, None)
                with contextlib.suppress(SlotStoreError):  # else it lapses within the lease
                    await self.slots.release(pool, lease_id)

        async def sending(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await release()  # the response is out: the slot is free before the app returns

        # Released after the application, whatever it did: the error it raised is kept and
        # raised again once the slot is back (no await inside a `finally` under mypyc).
        failure: BaseException | None = None
        try:
            await app(scope, receive, sending)
        except BaseException as raised:  # its own name: mypyc gives a name one type per function
            failure = raised
        await release()
        if failure is not None:
            raise failure

    async def refuse(self, send: Send, request: OAuthRequest, code: ErrorCode, why: str) -> None:
        error = TBAError(code, why)
        self.audit(request, error)
        answer: ErrorResponse = error_response(
            error, retry_after=self.settings.governance_retry_after
        )
        await _send(send, answer.status, answer.headers, answer.body)

    def _keep_renewing(self) -> None:
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Renew this process's leases every third of a lease while it holds any."""
        while self.held:
            await asyncio.sleep(self.lease / 3)
            leases = [(pool, lease_id) for lease_id, pool in self.held.items()]
            with contextlib.suppress(SlotStoreError):  # tried again a third of a lease later
                await self.slots.renew(leases, self.lease)

    async def in_flight(
        self, consumer_key: str = "", integration: Integration | None = None
    ) -> int:
        """Requests in flight in the pool of `consumer_key` (the shared pool without one)."""
        return await self.slots.in_flight(self.pool_for(consumer_key, integration)[0])


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
