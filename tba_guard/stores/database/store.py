"""`DatabaseCredentials`: integrations, access tokens and OAuth 2.0 mappings in SQLite or
PostgreSQL, behind caches; and where the guards' usage counts are added up.

Each lookup that reaches the database runs in a small pool of worker threads, bounded by
`timeout`, so a database that is down, slow or refusing costs a request at most that long
before the guard answers 503; nothing is kept past `ttl`, so a revoked token is never accepted
more than `ttl` seconds after the revocation, whatever state the database is in.

In front of the database, per process:

- a TTL cache of records found, and a bounded one of ids not found;
- a directory of the ids that exist (one query loads it), so a flood of made-up consumer keys
  or token ids is answered from memory: at most one reload a second, not a query per request;
- one query for concurrent misses of one id;
- on PostgreSQL, a thread that LISTENs for the change notices the tables' triggers send, and
  drops what changed from the caches: a block or a revocation bites at once, with `ttl` as the
  fallback when the notices stop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from cachetools import TTLCache
from sqlalchemy import Engine, case, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ...core.records import Certificate, Integration, Token, TokenState
from .connect import create, libpq_url, sqlalchemy_url
from .schema import NOTIFY_CHANNEL, certificates, integrations, tokens, usage
from .sealing import Sealer, SealError

T = TypeVar("T")
Kind = Literal["integration", "token", "client", "certificate"]
KINDS: Final[tuple[Kind, ...]] = ("integration", "token", "client", "certificate")
#: What `flush_usage` takes: (consumer key, token or certificate ID, scheme) -> (requests to
#: add, when the last was accepted, epoch seconds).
UsageCounts = Mapping[tuple[str, str, str], tuple[int, float]]

#: How often, at most, an id missing from a directory reloads it.
DIRECTORY_REFRESH: Final = 1.0
#: Ids a directory holds at most; a larger table is looked up id by id (with the caches).
DIRECTORY_MAX: Final = 100_000
#: Change notices held for the next lookup; past this, the caches are simply emptied.
_MAX_PENDING_CHANGES: Final = 10_000
_FLUSH: Final = "*"
_OVERSIZE_RECHECK: Final = 60.0


class DatabaseUnavailable(Exception):
    """The database did not answer in time, or refused. The guard answers 503."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token row, and whether the authorization flow issued it (then the flow checks its
    user and role on each use, so the plain credential view leaves it to the flow)."""

    token: Token
    by_flow: bool


@dataclass(frozen=True, slots=True)
class MappedCertificate:
    """A mapping row, and the integration it belongs to (whose change drops it from the cache:
    its client ID is the integration's)."""

    certificate: Certificate
    consumer_key: str


@dataclass(slots=True)
class _Directory:
    ids: set[str] | None = None  # None: not loaded yet, or the table is too large
    loaded_at: float = float("-inf")
    added: set[str] = field(default_factory=set)  # announced while a reload was running


class DatabaseCredentials:
    """A `CredentialStore` on a database; also where the flow keeps the access tokens it issues
    (`put_flow_token`, `flow_token`). One per database per process: see `shared_store`."""

    def __init__(
        self,
        url: str,
        keys: tuple[str, ...] | list[str],
        *,
        ttl: float = 5.0,
        timeout: float = 1.0,
        pool_size: int = 4,
        cache_size: int = 10_000,
        listen: bool = True,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.dialect = sqlalchemy_url(url).get_backend_name()
        self.sealer = Sealer(keys)
        self.ttl, self.timeout, self.pool_size = ttl, timeout, pool_size
        self._timer, self._clock = timer, clock
        self._listen = listen and self.dialect == "postgresql"
        # Records found, with the moment they expire. Plain dicts, not TTLCache: a hit is on
        # every request, and TTLCache's hit costs about 0.4 µs to a dict's 0.02 (two lookups:
        # 4 % of a verification). Bounded all the same, by `_remember`.
        self.cache_size = cache_size
        self._integrations: dict[str, tuple[float, Integration]] = {}
        self._tokens: dict[str, tuple[float, IssuedToken]] = {}
        self._clients: dict[str, tuple[float, Integration]] = {}
        self._certificates: dict[str, tuple[float, MappedCertificate]] = {}
        self._missing: dict[Kind, TTLCache[str, bool]] = {
            kind: TTLCache(cache_size, ttl, timer) for kind in KINDS
        }
        self._directories: dict[Kind, _Directory] = {kind: _Directory() for kind in KINDS}
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}
        # Filled by the listener thread, emptied on the event loop: deque appends and pops are
        # atomic, so the hot path takes no lock.
        self._changes: deque[str] = deque()
        self._generation = 0
        self._pid = 0
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener: _Listener | None = None
        #: Queries sent to the database by lookups (the benchmarks and tests count them).
        self.queries = 0

    # --- the CredentialStore protocol ----------------------------------------------------------

    async def integration(self, consumer_key: str) -> Integration | None:
        if not self._changes:  # the hit, inline: what nearly every request takes
            entry = self._integrations.get(consumer_key)
            if entry is not None and entry[0] > self._timer():
                return entry[1]
        return await self._lookup(
            "integration", consumer_key, self._integrations, self._fetch_integration
        )

    async def token(self, token_id: str) -> Token | None:
        """Tokens issued from the command line or imported; the flow's are its own to serve."""
        if not self._changes:
            entry = self._tokens.get(token_id)
            if entry is not None and entry[0] > self._timer():
                return None if entry[1].by_flow else entry[1].token
        found = await self._lookup("token", token_id, self._tokens, self._fetch_token)
        return found.token if found is not None and not found.by_flow else None

    # --- the ClientStore protocol (OAuth 2.0) ---------------------------------------------------

    async def client(self, client_id: str) -> Integration | None:
        """The integration whose OAuth 2.0 client ID this is."""
        if not self._changes:
            entry = self._clients.get(client_id)
            if entry is not None and entry[0] > self._timer():
                return entry[1]
        return await self._lookup("client", client_id, self._clients, self._fetch_client)

    async def certificate(self, certificate_id: str) -> Certificate | None:
        """The mapping an assertion's `kid` names, revoked ones included (to say why)."""
        if not self._changes:
            entry = self._certificates.get(certificate_id)
            if entry is not None and entry[0] > self._timer():
                return entry[1].certificate
        found = await self._lookup(
            "certificate", certificate_id, self._certificates, self._fetch_certificate
        )
        return None if found is None else found.certificate

    # --- usage ---------------------------------------------------------------------------------

    async def flush_usage(self, counts: UsageCounts) -> None:
        """Add the counts to the database's, keeping the latest `last_used`: one upsert, in
        one transaction, off the event loop. Raises `DatabaseUnavailable`."""
        rows = [
            {
                "consumer_key": consumer_key,
                "token_id": token_id,
                "scheme": scheme,
                "count": count,
                "last_used": last_used,
            }
            for (consumer_key, token_id, scheme), (count, last_used) in counts.items()
        ]
        if rows:
            await self._off_loop(self._upsert_usage, rows)

    # --- governance ----------------------------------------------------------------------------

    async def concurrency_allocations(self) -> dict[str, int]:
        """Consumer key -> slots, of every integration with an allocation: one query, shared
        by concurrent callers, so the guard can size the shared pool. Raises
        `DatabaseUnavailable`."""
        return await self._once("allocations", lambda: self._off_loop(self._fetch_allocations))

    # --- the flow's access tokens --------------------------------------------------------------

    async def flow_token(self, token_id: str) -> Token | None:
        found = await self._lookup("token", token_id, self._tokens, self._fetch_token)
        return found.token if found is not None and found.by_flow else None

    async def put_flow_token(self, token: Token) -> None:
        await self._off_loop(self._insert_flow_token, token)
        self._forget_absence("token", token.token_id)
        self._remember(self._tokens, token.token_id, IssuedToken(token, by_flow=True))

    # --- caches --------------------------------------------------------------------------------

    async def _lookup(
        self,
        kind: Kind,
        key: str,
        cache: dict[str, tuple[float, T]],
        fetch: Callable[[str], T | None],
    ) -> T | None:
        if self._changes:
            self._apply_changes()
        entry = cache.get(key)
        if entry is not None and entry[0] > self._timer():
            return entry[1]
        missing = self._missing[kind]
        if key in missing or not await self._may_exist(kind, key):
            return None
        generation = self._generation
        found = await self._once((kind, key), lambda: self._off_loop(fetch, key))
        if self._changes:
            self._apply_changes()
        # A change announced while the query ran may not be in what it read: not cached.
        if self.ttl > 0 and generation == self._generation:
            if found is None:
                missing[key] = True
            else:
                self._remember(cache, key, found)
        return found

    def _remember(self, cache: dict[str, tuple[float, T]], key: str, value: T) -> None:
        """Cache for `ttl`. When full, the oldest entry goes: with one TTL for all, that is
        the one closest to expiring, as TTLCache would choose."""
        if self.ttl <= 0:
            return
        cache.pop(key, None)  # re-inserted at the end: the order stays the order of expiry
        if len(cache) >= self.cache_size:
            del cache[next(iter(cache))]
        cache[key] = (self._timer() + self.ttl, value)

    async def _may_exist(self, kind: Kind, key: str) -> bool:
        """False only when the directory, loaded less than a second ago, lacks the id."""
        if self.ttl <= 0:
            return True
        directory = self._directories[kind]
        if directory.ids is not None and key in directory.ids:
            return True
        now = self._timer()
        if now - directory.loaded_at < min(DIRECTORY_REFRESH, self.ttl):
            return directory.ids is None  # too large to hold: look the id up
        if directory.ids is None and now - directory.loaded_at < _OVERSIZE_RECHECK:
            return True  # too large to hold: checked again now and then, should it shrink
        await self._once(("directory", kind), lambda: self._reload_directory(kind))
        return directory.ids is None or key in directory.ids

    async def _reload_directory(self, kind: Kind) -> None:
        directory = self._directories[kind]
        directory.added = set()
        started = self._timer()
        loaded = await self._off_loop(self._fetch_ids, kind)
        directory.loaded_at = started
        directory.ids = None if loaded is None else loaded | directory.added

    def _apply_changes(self) -> None:
        """Drop what the listener was told changed. Runs on the event loop."""
        self._generation += 1
        while self._changes:
            change = self._changes.popleft()
            if change == _FLUSH:
                self.clear()
                continue
            kind, _, key = change.partition(":")
            if kind == "integration":
                self._integrations.pop(key, None)
                self._forget_absence("integration", key)
                self._forget_clients_of(key)
            elif kind == "token":
                self._tokens.pop(key, None)
                self._forget_absence("token", key)
            elif kind == "certificate":
                self._certificates.pop(key, None)
                self._forget_absence("certificate", key)

    def _forget_clients_of(self, consumer_key: str) -> None:
        """An integration changed: what the client and mapping caches hold of it goes. Its
        client ID may be new, so what is known missing goes too, and the directory reloads."""
        for client_id, (_, found) in list(self._clients.items()):
            if found.consumer_key == consumer_key:
                del self._clients[client_id]
        for certificate_id, (_, mapped) in list(self._certificates.items()):
            if mapped.consumer_key == consumer_key:
                del self._certificates[certificate_id]
        self._missing["client"].clear()
        self._directories["client"].loaded_at = float("-inf")

    def _forget_absence(self, kind: Kind, key: str) -> None:
        """The id may exist now: no longer known missing, and in the directory."""
        self._missing[kind].pop(key, None)
        directory = self._directories[kind]
        directory.added.add(key)
        if directory.ids is not None:
            directory.ids.add(key)

    def clear(self) -> None:
        """Forget everything cached: the next lookups ask the database."""
        self._generation += 1
        self._integrations.clear()
        self._tokens.clear()
        self._clients.clear()
        self._certificates.clear()
        for kind, missing in self._missing.items():
            missing.clear()
            self._directories[kind].loaded_at = float("-inf")

    def changed(self, kind: Kind, key: str) -> None:
        """Forget one id now (a change made in this process, or told by another channel)."""
        self._changes.append(f"{kind}:{key}")

    @property
    def push_connected(self) -> bool:
        """Whether change notices are arriving (PostgreSQL's LISTEN is connected)."""
        return self._listener is not None and self._listener.connected.is_set()

    # --- one query per id, off the event loop, bounded in time ---------------------------------

    async def _once(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`work()` once for concurrent callers with one key: they share its result or error,
        and one caller that gives up (its client left) does not cancel it for the others."""
        loop = asyncio.get_running_loop()
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(work())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _finished(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error no caller awaited is not reported

    async def _off_loop(self, work: Callable[..., T], *args: Any) -> T:
        self._start()
        assert self._executor is not None
        self.queries += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the credential database did not answer within {self.timeout:g} s"
            ) from None

    def _start(self) -> None:
        """The engine, the threads and the listener of this process (a forked child builds its
        own: connections and threads do not survive a fork)."""
        pid = os.getpid()
        if pid == self._pid:
            return
        with self._lock:
            if pid == self._pid:
                return
            if self._engine is not None:
                self._engine.dispose(close=False)  # the parent's connections stay the parent's
            self._engine = create(self.url, pool_size=self.pool_size, timeout=self.timeout)
            self._executor = ThreadPoolExecutor(self.pool_size, thread_name_prefix="tba_guard_db")
            if self._listen:
                self._listener = _Listener(libpq_url(self.url), self._changes)
                self._listener.start()
            self._pid = pid

    def close(self) -> None:
        """Stop the listener and the threads and close the connections (idempotent)."""
        with self._lock:
            if self._listener is not None:
                self._listener.stop()
                self._listener = None
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            self._pid = 0

    # --- in the worker threads -----------------------------------------------------------------

    def _fetch_integration(self, key: str) -> Integration | None:
        query = select(integrations).where(integrations.c.consumer_key == key)
        row = self._query(lambda connection: connection.execute(query).first())
        if row is None:
            return None
        values = row._mapping
        return integration_from_row(values, self._open("integration", key, values["secret_sealed"]))

    def _fetch_client(self, client_id: str) -> Integration | None:
        query = select(integrations).where(integrations.c.client_id == client_id)
        row = self._query(lambda connection: connection.execute(query).first())
        if row is None:
            return None
        values = row._mapping
        secret = self._open("integration", values["consumer_key"], values["secret_sealed"])
        return integration_from_row(values, secret)

    def _fetch_certificate(self, certificate_id: str) -> MappedCertificate | None:
        query = (
            select(certificates, integrations.c.client_id)
            .join(integrations, integrations.c.consumer_key == certificates.c.consumer_key)
            .where(certificates.c.certificate_id == certificate_id)
        )
        row = self._query(lambda connection: connection.execute(query).first())
        if row is None:
            return None
        values = row._mapping
        return MappedCertificate(certificate_from_row(values), values["consumer_key"])

    def _fetch_token(self, key: str) -> IssuedToken | None:
        query = select(tokens).where(tokens.c.token_id == key)
        row = self._query(lambda connection: connection.execute(query).first())
        if row is None:
            return None
        values = row._mapping
        token = token_from_row(values, self._open("token", key, values["secret_sealed"]))
        return IssuedToken(token, by_flow=values["issued_by"] == "flow")

    def _open(self, kind: Kind, key: str, sealed: str) -> str:
        try:
            return self.sealer.open(kind, key, sealed)
        except SealError as exc:  # a wrong credential_key: an operator's fix, so a 503
            raise DatabaseUnavailable(str(exc)) from None

    def _fetch_ids(self, kind: Kind) -> set[str] | None:
        column = _ID_COLUMNS[kind]
        query = select(column).where(column.is_not(None)).limit(DIRECTORY_MAX + 1)
        rows = self._query(lambda connection: connection.execute(query).all())
        return None if len(rows) > DIRECTORY_MAX else {row[0] for row in rows}

    def _fetch_allocations(self) -> dict[str, int]:
        column = integrations.c.concurrency_limit
        query = select(integrations.c.consumer_key, column).where(column.is_not(None))
        rows = self._query(lambda connection: connection.execute(query).all())
        return {consumer_key: int(slots) for consumer_key, slots in rows}

    def _upsert_usage(self, rows: list[dict[str, Any]]) -> None:
        statement = usage_upsert(self.dialect)

        def write(connection: Any) -> None:
            connection.execute(statement, rows)
            connection.commit()

        self._query(write)

    def _insert_flow_token(self, token: Token) -> None:
        now = self._clock()
        row = token_row(self.sealer, token, issued_by="flow", now=now)

        def write(connection: Any) -> None:
            connection.execute(insert(tokens).values(**row))
            connection.commit()

        self._query(write)

    def _query(self, work: Callable[[Any], T]) -> T:
        """`work` on a pooled connection; once more on a fresh one when the pooled connection
        turns out dead (the database restarted since), so recovery costs no request."""
        assert self._engine is not None
        for attempt in (1, 2):
            try:
                with self._engine.connect() as connection:
                    return work(connection)
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue
                raise DatabaseUnavailable(_reason(exc)) from None
            except SQLAlchemyError as exc:
                raise DatabaseUnavailable(_reason(exc)) from None
        raise AssertionError("unreachable")


_ID_COLUMNS: Final = {
    "integration": integrations.c.consumer_key,
    "token": tokens.c.token_id,
    "client": integrations.c.client_id,
    "certificate": certificates.c.certificate_id,
}


def usage_upsert(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO UPDATE, in SQLite's and PostgreSQL's common form: the counts
    add up, and the later `last_used` stays (flushes of several processes interleave)."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(usage)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[usage.c.consumer_key, usage.c.token_id, usage.c.scheme],
        set_={
            "count": usage.c.count + new["count"],
            "last_used": case(
                (new.last_used > usage.c.last_used, new.last_used), else_=usage.c.last_used
            ),
        },
    )


def schemes_of(text: str) -> tuple[str, ...]:
    """The `schemes` column ("tba,oauth2") as the record holds it."""
    return tuple(name for name in text.split(",") if name)


def integration_from_row(values: Any, secret: str) -> Integration:
    return Integration(
        consumer_key=values["consumer_key"],
        consumer_secret=secret,
        name=values["name"],
        state=values["state"],
        authorization_flow=bool(values["authorization_flow"]),
        callback_url=values["callback_url"],
        client_id=values["client_id"],
        schemes=schemes_of(values["schemes"]),
        concurrency_limit=values["concurrency_limit"],
    )


def certificate_from_row(values: Any) -> Certificate:
    """A mapping joined with its integration's `client_id` (empty when it has none: no
    assertion's `iss` can then name it)."""
    return Certificate(
        certificate_id=values["certificate_id"],
        client_id=values["client_id"] or "",
        entity=values["entity"],
        role=values["role"],
        certificate=values["certificate"],
        state=values["state"],
    )


def token_from_row(values: Any, secret: str) -> Token:
    """The database keeps no users: its `active` column is the token record's own switch
    (`tba-guard token deactivate|activate`), and `revoked` is final."""
    revoked = bool(values["revoked"])
    state: TokenState = "revoked" if revoked else "active" if values["active"] else "inactive"
    return Token(
        token_id=values["token_id"],
        token_secret=secret,
        consumer_key=values["consumer_key"],
        entity=values["entity"],
        role=values["role"],
        revoked=revoked,
        expires_at=values["expires_at"],
        account=values["account"],
        state=state,
    )


def token_row(sealer: Sealer, token: Token, *, issued_by: str, now: float) -> dict[str, Any]:
    """The `tba_tokens` row for a token: its secret sealed. A token whose entity or role is
    disabled (`active=False`) is kept inactive: the row has one switch for both."""
    return {
        "token_id": token.token_id,
        "secret_sealed": sealer.seal("token", token.token_id, token.token_secret),
        "consumer_key": token.consumer_key,
        "entity": token.entity,
        "role": token.role,
        "active": token.active and token.state != "inactive",
        "revoked": token.current_state == "revoked",
        "expires_at": token.expires_at,
        "account": token.account,
        "issued_by": issued_by,
        "created_at": now,
        "updated_at": now,
        "revoked_at": now if token.current_state == "revoked" else None,
    }


def _reason(exc: SQLAlchemyError) -> str:
    """One line for the log: the driver's message, without the SQL or its parameters."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
    if "tba_" in text and ("does not exist" in text or "no such table" in text):
        return f"{text} (run `tba-guard db upgrade`)"
    return f"{type(original).__name__}: {text}"


class _Listener:
    """A thread holding one PostgreSQL connection that LISTENs for change notices and queues
    them for the event loop. When the connection drops it reconnects, and queues a flush:
    whatever changed meanwhile was not announced to it."""

    def __init__(self, conninfo: str, changes: deque[str]) -> None:
        self._conninfo = conninfo
        self._changes = changes
        self._stopping = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tba_guard_listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=3)

    def _queue(self, change: str) -> None:
        if len(self._changes) >= _MAX_PENDING_CHANGES:
            self._changes.clear()
            change = _FLUSH
        self._changes.append(change)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._queue(_FLUSH)
                    self.connected.set()
                    backoff = 0.1
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self._queue(notice.payload)
            except Exception:  # any failure: reconnect; the TTL still bounds staleness
                self.connected.clear()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        self.connected.clear()
