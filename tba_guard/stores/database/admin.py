"""`CredentialAdmin`: create, list, block, enable, remove integrations; issue, list, revoke
tokens; import a settings file; re-seal every secret under a new key.

Synchronous, for the command line and for scripts. A new secret is returned once, by the call
that creates it; listings never hold one. Every change is written to the audit log (the logger
`tba_guard.audit`, fields under `record.tba_change`) with identifiers only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from ...core.records import Integration, Token
from .schema import integrations, tokens
from .sealing import Sealer
from .store import token_from_row, token_row

logger = logging.getLogger("tba_guard.audit")

#: Random bytes in a generated consumer key, consumer secret, token id or token secret, written
#: as 64 hexadecimal characters: NetSuite rule N19 (docs/netsuite-behaviour.md).
SECRET_BYTES = 32


class NotFound(LookupError):
    """No integration or token with that key."""


@dataclass(frozen=True, slots=True)
class IntegrationInfo:
    consumer_key: str
    name: str
    state: str
    authorization_flow: bool
    callback_url: str | None
    tokens: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    consumer_key: str
    entity: str
    role: str
    state: Literal["active", "inactive", "revoked"]
    issued_by: str
    account: str | None
    expires_at: float | None
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: tuple[str, ...]
    skipped: tuple[str, ...]  # already there: left as they are


class CredentialAdmin:
    """Management of one credential database. `actor` names who acts, on the audit log."""

    def __init__(
        self,
        engine: Engine,
        sealer: Sealer,
        *,
        actor: str = "cli",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.sealer, self.actor, self._clock = engine, sealer, actor, clock

    # --- integrations --------------------------------------------------------------------------

    def add_integration(
        self,
        name: str,
        *,
        consumer_key: str | None = None,
        authorization_flow: bool = False,
        callback_url: str | None = None,
        state: Literal["enabled", "blocked"] = "enabled",
    ) -> Integration:
        """A new integration with a fresh consumer secret: the only time it is readable."""
        integration = Integration(
            consumer_key=consumer_key or secrets.token_hex(SECRET_BYTES),
            consumer_secret=secrets.token_hex(SECRET_BYTES),
            name=name,
            state=state,
            authorization_flow=authorization_flow,
            callback_url=callback_url,
        )
        with self.engine.begin() as connection:
            self._insert_integration(connection, integration)
        self._audit("integration.add", consumer_key=integration.consumer_key, name=name)
        return integration

    def integrations(self) -> list[IntegrationInfo]:
        counts = (
            select(tokens.c.consumer_key, func.count().label("n"))
            .group_by(tokens.c.consumer_key)
            .subquery()
        )
        query = (
            select(integrations, func.coalesce(counts.c.n, 0).label("tokens"))
            .outerjoin(counts, counts.c.consumer_key == integrations.c.consumer_key)
            .order_by(integrations.c.created_at, integrations.c.consumer_key)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            IntegrationInfo(
                consumer_key=row.consumer_key,
                name=row.name,
                state=row.state,
                authorization_flow=bool(row.authorization_flow),
                callback_url=row.callback_url,
                tokens=int(row.tokens),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    def set_state(self, consumer_key: str, state: Literal["enabled", "blocked"]) -> None:
        """Block or enable: every token of the integration stops or starts working with it."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(integrations)
                .where(integrations.c.consumer_key == consumer_key)
                .values(state=state, updated_at=self._clock())
            ).rowcount
        if not changed:
            raise NotFound(f"no integration with consumer key {consumer_key!r}")
        action = "integration.block" if state == "blocked" else "integration.enable"
        self._audit(action, consumer_key=consumer_key)

    def remove_integration(self, consumer_key: str) -> int:
        """Delete the integration and its tokens; how many tokens went with it."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(tokens).where(tokens.c.consumer_key == consumer_key)
            ).rowcount
            gone = connection.execute(
                delete(integrations).where(integrations.c.consumer_key == consumer_key)
            ).rowcount
            if not gone:
                raise NotFound(f"no integration with consumer key {consumer_key!r}")
        self._audit("integration.remove", consumer_key=consumer_key, tokens_removed=removed)
        return removed

    def integration_with_secret(self, consumer_key: str) -> Integration:
        """The whole record, secret included: for signing on this machine (`tba-guard sign`)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(integrations).where(integrations.c.consumer_key == consumer_key)
            ).first()
        if row is None:
            raise NotFound(f"no integration with consumer key {consumer_key!r}")
        return Integration(
            consumer_key=row.consumer_key,
            consumer_secret=self.sealer.open("integration", consumer_key, row.secret_sealed),
            name=row.name,
            state=row.state,
            authorization_flow=bool(row.authorization_flow),
            callback_url=row.callback_url,
        )

    # --- tokens --------------------------------------------------------------------------------

    def issue_token(
        self,
        consumer_key: str,
        *,
        entity: str,
        role: str,
        account: str | None = None,
        expires_at: float | None = None,
        token_id: str | None = None,
    ) -> Token:
        """A new access token with a fresh secret: the only time it is readable."""
        token = Token(
            token_id=token_id or secrets.token_hex(SECRET_BYTES),
            token_secret=secrets.token_hex(SECRET_BYTES),
            consumer_key=consumer_key,
            entity=entity,
            role=role,
            account=account,
            expires_at=expires_at,
        )
        with self.engine.begin() as connection:
            self._require_integration(connection, consumer_key)
            self._insert_token(connection, token, issued_by="cli")
        self._audit(
            "token.issue", token_id=token.token_id, consumer_key=consumer_key, entity=entity
        )
        return token

    def tokens(self, consumer_key: str | None = None) -> list[TokenInfo]:
        query = select(tokens).order_by(tokens.c.created_at, tokens.c.token_id)
        if consumer_key is not None:
            query = query.where(tokens.c.consumer_key == consumer_key)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            TokenInfo(
                token_id=row.token_id,
                consumer_key=row.consumer_key,
                entity=row.entity,
                role=row.role,
                state="revoked" if row.revoked else "active" if row.active else "inactive",
                issued_by=row.issued_by,
                account=row.account,
                expires_at=row.expires_at,
                created_at=row.created_at,
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]

    def revoke_token(self, token_id: str) -> None:
        now = self._clock()
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(tokens)
                .where(tokens.c.token_id == token_id)
                .values(revoked=True, revoked_at=now, updated_at=now)
            ).rowcount
        if not changed:
            raise NotFound(f"no token with id {token_id!r}")
        self._audit("token.revoke", token_id=token_id)

    def token_with_secret(self, token_id: str) -> Token:
        """The whole record, secret included: for signing on this machine (`tba-guard sign`)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(tokens).where(tokens.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        return token_from_row(row._mapping, self.sealer.open("token", token_id, row.secret_sealed))

    # --- the whole database --------------------------------------------------------------------

    def import_records(
        self, new_integrations: Iterable[Integration], new_tokens: Iterable[Token]
    ) -> ImportResult:
        """Copy a settings file's `[[integrations]]` and `[[tokens]]` in, in one transaction;
        a key already in the database is left as it is (import twice: nothing changes)."""
        added: list[str] = []
        skipped: list[str] = []
        with self.engine.begin() as connection:
            known = set(connection.execute(select(integrations.c.consumer_key)).scalars())
            for integration in new_integrations:
                name = f"integration {integration.consumer_key}"
                if integration.consumer_key in known:
                    skipped.append(name)
                    continue
                self._insert_integration(connection, integration)
                known.add(integration.consumer_key)
                added.append(name)
            have = set(connection.execute(select(tokens.c.token_id)).scalars())
            for token in new_tokens:
                name = f"token {token.token_id}"
                if token.token_id in have:
                    skipped.append(name)
                    continue
                if token.consumer_key not in known:
                    raise NotFound(
                        f"token {token.token_id!r}: no integration {token.consumer_key!r}"
                    )
                self._insert_token(connection, token, issued_by="import")
                have.add(token.token_id)
                added.append(name)
        for name in added:
            kind, _, key = name.partition(" ")
            self._audit(f"{kind}.import", **{_KEY_FIELD[kind]: key})
        return ImportResult(tuple(added), tuple(skipped))

    def rekey(self) -> int:
        """Re-seal every secret under the first `credential_key`; how many were re-sealed.
        Run it with the new key first and the old ones after it, then drop the old ones."""
        count = 0
        with self.engine.begin() as connection:
            for table, kind, key_column in (
                (integrations, "integration", integrations.c.consumer_key),
                (tokens, "token", tokens.c.token_id),
            ):
                rows = connection.execute(select(key_column, table.c.secret_sealed)).all()
                for key, sealed in rows:
                    connection.execute(
                        update(table)
                        .where(key_column == key)
                        .values(secret_sealed=self.sealer.reseal(kind, key, sealed))
                    )
                    count += 1
        self._audit("database.rekey", secrets_resealed=count)
        return count

    # --- helpers -------------------------------------------------------------------------------

    def _insert_integration(self, connection: Connection, integration: Integration) -> None:
        now = self._clock()
        key = integration.consumer_key
        connection.execute(
            insert(integrations).values(
                consumer_key=key,
                name=integration.name,
                secret_sealed=self.sealer.seal("integration", key, integration.consumer_secret),
                state=integration.state,
                authorization_flow=integration.authorization_flow,
                callback_url=integration.callback_url,
                created_at=now,
                updated_at=now,
            )
        )

    def _insert_token(self, connection: Connection, token: Token, *, issued_by: str) -> None:
        row = token_row(self.sealer, token, issued_by=issued_by, now=self._clock())
        connection.execute(insert(tokens).values(**row))

    def _require_integration(self, connection: Connection, consumer_key: str) -> None:
        found = connection.execute(
            select(integrations.c.consumer_key).where(integrations.c.consumer_key == consumer_key)
        ).first()
        if found is None:
            raise NotFound(f"no integration with consumer key {consumer_key!r}")

    def _audit(self, action: str, **fields: Any) -> None:
        """One line per change, identifiers only: never a secret."""
        change = {"action": action, "actor": self.actor, "time": self._clock(), **fields}
        shown = " ".join(f"{name}={value!r}" for name, value in fields.items())  # repr: one line
        logger.info(
            "change %s actor=%s %s", action, self.actor, shown, extra={"tba_change": change}
        )


_KEY_FIELD = {"integration": "consumer_key", "token": "token_id"}
