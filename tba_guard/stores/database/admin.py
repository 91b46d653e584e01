"""`CredentialAdmin`: create, list, block, enable, remove integrations and set their
concurrency allocations; issue, list,
deactivate, activate, revoke tokens; add, list, revoke OAuth 2.0 certificates; read the usage
counts; import a settings file; re-seal every secret under a new key.

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

from ...core.jose import JoseError, mapping_certificate, read_certificate
from ...core.records import SCHEME_NAMES, Integration, Token
from .schema import certificates, integrations, tokens, usage
from .sealing import Sealer
from .store import integration_from_row, schemes_of, token_from_row, token_row

logger = logging.getLogger("tba_guard.audit")

#: Random bytes in a generated consumer key, consumer secret, token id or token secret, written
#: as 64 hexadecimal characters: NetSuite rule N19 (docs/netsuite-behaviour.md).
SECRET_BYTES = 32
#: Active certificates an integration may have at once (NetSuite's limit per mapping).
MAX_ACTIVE_CERTIFICATES = 5


class NotFound(LookupError):
    """No integration or token with that key."""


class Refused(ValueError):
    """A change the rules forbid (a certificate the guard would refuse, a client ID in use)."""


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
    client_id: str | None = None
    schemes: tuple[str, ...] = SCHEME_NAMES
    last_used: float | None = None  # the latest request of any of its tokens, any scheme
    concurrency_limit: int | None = None  # governance: its own slots (None: the shared pool)


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
    last_used: float | None = None  # as the guards last flushed their counts


@dataclass(frozen=True, slots=True)
class MappingInfo:
    """An OAuth 2.0 mapping as listed: never more than the public certificate holds."""

    certificate_id: str
    consumer_key: str
    client_id: str | None
    entity: str
    role: str
    kind: str  # "RSA 3072", "EC P-256"
    fingerprint: str  # SHA-256 of the certificate, hex
    not_before: float
    not_after: float
    state: str  # "active" or "revoked"
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class UsageInfo:
    consumer_key: str
    token_id: str  # or, for OAuth 2.0, the certificate ID
    scheme: str
    count: int
    last_used: float


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
        client_id: str | None = None,
        schemes: Iterable[str] = SCHEME_NAMES,
        concurrency_limit: int | None = None,
    ) -> Integration:
        """A new integration with a fresh consumer secret: the only time it is readable."""
        integration = Integration(
            consumer_key=consumer_key or secrets.token_hex(SECRET_BYTES),
            consumer_secret=secrets.token_hex(SECRET_BYTES),
            name=name,
            state=state,
            authorization_flow=authorization_flow,
            callback_url=callback_url,
            client_id=client_id,
            schemes=checked_schemes(schemes),
            concurrency_limit=checked_slots(concurrency_limit),
        )
        with self.engine.begin() as connection:
            if client_id is not None:
                self._require_client_free(connection, client_id, integration.consumer_key)
            self._insert_integration(connection, integration)
        self._audit(
            "integration.add",
            consumer_key=integration.consumer_key,
            name=name,
            client_id=client_id,
            schemes=",".join(integration.schemes),
            concurrency_limit=concurrency_limit,
        )
        return integration

    def integrations(self) -> list[IntegrationInfo]:
        counts = (
            select(tokens.c.consumer_key, func.count().label("n"))
            .group_by(tokens.c.consumer_key)
            .subquery()
        )
        used = (
            select(usage.c.consumer_key, func.max(usage.c.last_used).label("last_used"))
            .group_by(usage.c.consumer_key)
            .subquery()
        )
        query = (
            select(
                integrations,
                func.coalesce(counts.c.n, 0).label("tokens"),
                used.c.last_used.label("last_used"),
            )
            .outerjoin(counts, counts.c.consumer_key == integrations.c.consumer_key)
            .outerjoin(used, used.c.consumer_key == integrations.c.consumer_key)
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
                client_id=row.client_id,
                schemes=schemes_of(row.schemes),
                last_used=row.last_used,
                concurrency_limit=row.concurrency_limit,
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

    def set_client(self, consumer_key: str, client_id: str | None) -> None:
        """Give the integration its OAuth 2.0 client ID (None: take it away). Its mappings
        follow it: they belong to the integration."""
        with self.engine.begin() as connection:
            if client_id is not None:
                self._require_client_free(connection, client_id, consumer_key)
            self._update_integration(connection, consumer_key, client_id=client_id)
        self._audit("integration.client", consumer_key=consumer_key, client_id=client_id)

    def set_schemes(self, consumer_key: str, schemes: Iterable[str]) -> None:
        """What the integration may sign with: `tba`, `oauth2`, or both while it migrates."""
        chosen = checked_schemes(schemes)
        with self.engine.begin() as connection:
            self._update_integration(connection, consumer_key, schemes=",".join(chosen))
        self._audit("integration.schemes", consumer_key=consumer_key, schemes=",".join(chosen))

    def set_concurrency_limit(self, consumer_key: str, slots: int | None) -> None:
        """Allocate `slots` of the account's concurrency to the integration alone (None: it
        shares the unallocated pool again). Running guards learn it within their cache TTL."""
        checked_slots(slots)
        with self.engine.begin() as connection:
            self._update_integration(connection, consumer_key, concurrency_limit=slots)
        self._audit("integration.concurrency", consumer_key=consumer_key, slots=slots)

    def remove_integration(self, consumer_key: str) -> int:
        """Delete the integration, its tokens and its certificates; how many tokens went."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(tokens).where(tokens.c.consumer_key == consumer_key)
            ).rowcount
            connection.execute(
                delete(certificates).where(certificates.c.consumer_key == consumer_key)
            )
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
        secret = self.sealer.open("integration", consumer_key, row.secret_sealed)
        return integration_from_row(row._mapping, secret)

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
        # The usage counts the guards flush in batches: reading the last use costs no write
        # on the request's path.
        used = (
            select(
                usage.c.consumer_key,
                usage.c.token_id,
                func.max(usage.c.last_used).label("last_used"),
            )
            .where(usage.c.scheme == "tba")
            .group_by(usage.c.consumer_key, usage.c.token_id)
            .subquery()
        )
        query = (
            select(tokens, used.c.last_used.label("last_used"))
            .outerjoin(
                used,
                (used.c.token_id == tokens.c.token_id)
                & (used.c.consumer_key == tokens.c.consumer_key),
            )
            .order_by(tokens.c.created_at, tokens.c.token_id)
        )
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
                last_used=row.last_used,
            )
            for row in rows
        ]

    def revoke_token(self, token_id: str) -> None:
        """Final: the record is kept, to say why the guard refuses it; revoking it again
        changes nothing (its `revoked_at` stays the first)."""
        now = self._clock()
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(tokens)
                .where(tokens.c.token_id == token_id)
                .where(tokens.c.revoked.is_(False))
                .values(revoked=True, revoked_at=now, updated_at=now)
            ).rowcount
        if not changed:
            self._require_token(token_id)  # NotFound, unless it was revoked already
            return
        self._audit("token.revoke", token_id=token_id)

    def set_token_state(self, token_id: str, state: Literal["active", "inactive"]) -> None:
        """Deactivate or activate again: NetSuite's reversible switch on the token record.
        A revoked token is refused (`Refused`): revocation is final."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(tokens)
                .where(tokens.c.token_id == token_id)
                .where(tokens.c.revoked.is_(False))
                .values(active=state == "active", updated_at=self._clock())
            ).rowcount
        if not changed:
            self._require_token(token_id)
            raise Refused(
                f"token {token_id!r} is revoked, and a revocation is final: issue a new token "
                "(tba-guard token issue)"
            )
        action = "token.activate" if state == "active" else "token.deactivate"
        self._audit(action, token_id=token_id)

    def token_with_secret(self, token_id: str) -> Token:
        """The whole record, secret included: for signing on this machine (`tba-guard sign`)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(tokens).where(tokens.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        return token_from_row(row._mapping, self.sealer.open("token", token_id, row.secret_sealed))

    # --- OAuth 2.0 certificates (client-credentials mappings) -----------------------------------

    def add_certificate(
        self,
        client_id: str,
        entity: str,
        role: str,
        pem: str,
        certificate_id: str | None = None,
    ) -> MappingInfo:
        """Map the certificate to the integration with `client_id`, for `entity` and `role`.
        Refused (`Refused`) as the guard would refuse it: a key of the wrong kind or size,
        valid for over two years, expired; or a sixth active one for the integration."""
        now = self._clock()
        try:
            info = mapping_certificate(pem, now)
        except JoseError as exc:
            raise Refused(str(exc)) from None
        certificate_id = certificate_id or secrets.token_urlsafe(SECRET_BYTES)
        with self.engine.begin() as connection:
            consumer_key = self._integration_of_client(connection, client_id)
            self._require_room_for_certificate(connection, consumer_key, certificate_id)
            connection.execute(
                insert(certificates).values(
                    certificate_id=certificate_id,
                    consumer_key=consumer_key,
                    entity=entity,
                    role=role,
                    certificate=pem.strip() + "\n",
                    not_before=info.not_before,
                    not_after=info.not_after,
                    state="active",
                    created_at=now,
                    revoked_at=None,
                )
            )
        self._audit(
            "certificate.add",
            certificate_id=certificate_id,
            consumer_key=consumer_key,
            client_id=client_id,
            entity=entity,
            role=role,
            fingerprint=info.fingerprint,
        )
        return self.certificate(certificate_id)

    def certificates(self, client_id: str | None = None) -> list[MappingInfo]:
        query = (
            select(certificates, integrations.c.client_id)
            .join(integrations, integrations.c.consumer_key == certificates.c.consumer_key)
            .order_by(certificates.c.created_at, certificates.c.certificate_id)
        )
        if client_id is not None:
            query = query.where(integrations.c.client_id == client_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [mapping_info(row._mapping) for row in rows]

    def certificate(self, certificate_id: str) -> MappingInfo:
        query = (
            select(certificates, integrations.c.client_id)
            .join(integrations, integrations.c.consumer_key == certificates.c.consumer_key)
            .where(certificates.c.certificate_id == certificate_id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"no certificate with id {certificate_id!r}")
        return mapping_info(row._mapping)

    def revoke_certificate(self, certificate_id: str) -> None:
        """Revoked at once, and kept: the guard then names the reason it refuses."""
        now = self._clock()
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(certificates)
                .where(certificates.c.certificate_id == certificate_id)
                .where(certificates.c.state == "active")
                .values(state="revoked", revoked_at=now)
            ).rowcount
        if not changed:
            self.certificate(certificate_id)  # NotFound, unless it was revoked already
            return
        self._audit("certificate.revoke", certificate_id=certificate_id)

    # --- usage ---------------------------------------------------------------------------------

    def usage(self, since: float | None = None) -> list[UsageInfo]:
        """The counts the guards flushed, used at `since` (epoch seconds) or later."""
        query = select(usage).order_by(usage.c.consumer_key, usage.c.token_id, usage.c.scheme)
        if since is not None:
            query = query.where(usage.c.last_used >= since)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            UsageInfo(
                consumer_key=row.consumer_key,
                token_id=row.token_id,
                scheme=row.scheme,
                count=int(row._mapping["count"]),  # `row.count` is the tuple's method
                last_used=row.last_used,
            )
            for row in rows
        ]

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
                client_id=integration.client_id,
                schemes=",".join(checked_schemes(integration.schemes)),
                concurrency_limit=checked_slots(integration.concurrency_limit),
                created_at=now,
                updated_at=now,
            )
        )

    def _update_integration(self, connection: Connection, consumer_key: str, **values: Any) -> None:
        changed = connection.execute(
            update(integrations)
            .where(integrations.c.consumer_key == consumer_key)
            .values(**values, updated_at=self._clock())
        ).rowcount
        if not changed:
            raise NotFound(f"no integration with consumer key {consumer_key!r}")

    def _require_client_free(self, connection: Connection, client_id: str, owner: str) -> None:
        """A client ID names one integration: the lookup by it must find one."""
        holder = connection.execute(
            select(integrations.c.consumer_key).where(integrations.c.client_id == client_id)
        ).scalar()
        if holder is not None and holder != owner:
            raise Refused(f"client ID {client_id!r} is already integration {holder!r}'s")

    def _integration_of_client(self, connection: Connection, client_id: str) -> str:
        """The consumer key, its row locked (PostgreSQL) so that two concurrent additions
        cannot both pass the cap on active certificates."""
        consumer_key = connection.execute(
            select(integrations.c.consumer_key)
            .where(integrations.c.client_id == client_id)
            .with_for_update()
        ).scalar()
        if consumer_key is None:
            raise NotFound(f"no integration with client ID {client_id!r}")
        return str(consumer_key)

    def _require_room_for_certificate(
        self, connection: Connection, consumer_key: str, certificate_id: str
    ) -> None:
        taken = connection.execute(
            select(certificates.c.certificate_id).where(
                certificates.c.certificate_id == certificate_id
            )
        ).first()
        if taken is not None:
            raise Refused(f"certificate ID {certificate_id!r} is taken")
        active = connection.execute(
            select(func.count())
            .select_from(certificates)
            .where(certificates.c.consumer_key == consumer_key)
            .where(certificates.c.state == "active")
        ).scalar_one()
        if active >= MAX_ACTIVE_CERTIFICATES:
            raise Refused(
                f"the integration has {active} active certificates, the most it may have: "
                "revoke one first (tba-guard certificate revoke)"
            )

    def _insert_token(self, connection: Connection, token: Token, *, issued_by: str) -> None:
        row = token_row(self.sealer, token, issued_by=issued_by, now=self._clock())
        connection.execute(insert(tokens).values(**row))

    def _require_token(self, token_id: str) -> None:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(tokens.c.token_id).where(tokens.c.token_id == token_id)
            ).first()
        if found is None:
            raise NotFound(f"no token with id {token_id!r}")

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


def checked_schemes(schemes: Iterable[str]) -> tuple[str, ...]:
    """`tba`, `oauth2` or both, in that order; anything else is refused."""
    given = set(schemes)
    unknown = sorted(given - set(SCHEME_NAMES))
    if unknown or not given:
        raise Refused(f"schemes: expected tba, oauth2 or tba,oauth2, not {','.join(unknown)!r}")
    return tuple(name for name in SCHEME_NAMES if name in given)


def checked_slots(slots: int | None) -> int | None:
    """An allocation is one slot or more (None: none); as the settings require of theirs."""
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 1):
        raise Refused(f"concurrency limit: expected a whole number of slots >= 1, not {slots!r}")
    return slots


def mapping_info(values: Any) -> MappingInfo:
    certificate = read_certificate(values["certificate"])
    return MappingInfo(
        certificate_id=values["certificate_id"],
        consumer_key=values["consumer_key"],
        client_id=values["client_id"],
        entity=values["entity"],
        role=values["role"],
        kind=certificate.kind,
        fingerprint=certificate.fingerprint,
        not_before=values["not_before"],
        not_after=values["not_after"],
        state=values["state"],
        created_at=values["created_at"],
        revoked_at=values["revoked_at"],
    )
