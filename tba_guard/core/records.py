"""The records the checks read: integrations, tokens, users, the flow's request tokens, and the
`Identity` a verified request speaks for. Plain immutable data; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mypy_extensions import mypyc_attr

IntegrationState = Literal["enabled", "blocked"]
Decision = Literal["pending", "allowed", "denied"]
CertificateState = Literal["active", "revoked"]
#: A token record's state, as NetSuite keeps it: inactive is a switch that can be turned back
#: on; revoked is final, and the record is kept so that a refusal can say why.
TokenState = Literal["active", "inactive", "revoked"]
#: The `Authorization` schemes an integration may use: TBA (OAuth 1.0) and OAuth 2.0 bearer
#: tokens; `Identity.scheme` names the one a request used.
SCHEME_NAMES = ("tba", "oauth2")


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Integration:
    """An integration record: its consumer key and secret and its switches (NetSuite rule N15,
    docs/netsuite-behaviour.md)."""

    consumer_key: str
    consumer_secret: str
    name: str = ""
    state: IntegrationState = "enabled"
    authorization_flow: bool = False
    callback_url: str | None = None
    client_id: str | None = None  # its OAuth 2.0 client ID, beside the TBA consumer key
    schemes: tuple[str, ...] = SCHEME_NAMES  # what it may sign with: one, or both in migration
    concurrency_limit: int | None = None  # governance: slots allocated to it alone (None: shared)

    def __repr__(self) -> str:  # never print the secret
        return f"Integration(name={self.name!r}, consumer_key={self.consumer_key!r})"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Certificate:
    """An OAuth 2.0 client-credentials mapping: the integration (by client ID), the entity and
    role its tokens act as, and the X.509 certificate (PEM) whose key signs its assertions.
    `certificate_id` is the assertion's `kid`; `not_before`/`not_after` are epoch seconds
    read from the certificate. A revoked mapping is kept, to name the reason."""

    certificate_id: str
    client_id: str
    entity: str
    role: str
    certificate: str = field(repr=False)
    state: CertificateState = "active"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Brownout:
    """A window (epoch seconds from `start`, `length` seconds long) in which TBA is refused,
    for one integration (`consumer_key`) or, without one, for all: practice for TBA's end."""

    start: float
    length: float
    consumer_key: str | None = None

    def covers(self, consumer_key: str, now: float) -> bool:
        return self.start <= now < self.start + self.length and self.consumer_key in (
            None,
            consumer_key,
        )


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Token:
    """An access token: bound to one integration, one entity (user) and one role.

    `account` pins the token to a realm when one store serves several accounts; `expires_at`
    (epoch seconds) and `revoked` let a store report why a token stopped working.

    Two switches, as in NetSuite: `state` is the token record's own (active, inactive, or
    revoked for good; `revoked=True` is the older spelling of the last), while `active` says
    whether its entity and role are still usable (`EntityOrRoleDisabled` when not).
    """

    token_id: str
    token_secret: str
    consumer_key: str
    entity: str = ""
    role: str = ""
    active: bool = True
    revoked: bool = False
    expires_at: float | None = None
    account: str | None = None
    state: TokenState = "active"  # last: positional construction keeps its meaning

    @property
    def current_state(self) -> TokenState:
        """The record's state, `revoked=True` counting as revoked whatever `state` says."""
        return "revoked" if self.revoked else self.state

    def __repr__(self) -> str:  # never print the secret
        return f"Token(token_id={self.token_id!r}, consumer_key={self.consumer_key!r})"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class User:
    """Someone who may authorize an integration on the consent page: an entity, with the roles
    they may choose (NetSuite rule N18). `password` only serves the built-in sign-in form."""

    entity: str
    name: str
    password: str = field(default="", repr=False)
    roles: tuple[str, ...] = ()
    active: bool = True

    def may_use(self, role: str) -> bool:
        return self.active and role in self.roles


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class RequestToken:
    """A token between steps one and three. `verifier` is set by the user's decision: a random
    value on Allow, empty on Deny. `uses` counts exchanges; only the first may succeed."""

    token_id: str
    token_secret: str = field(repr=False)
    consumer_key: str
    callback: str
    expires_at: float
    realm: str = ""  # the account: the configured realm, else the one sent at step one
    requested_role: str = ""  # the `role` header parameter of step one: NetSuite rule N22
    decision: Decision = "pending"
    verifier: str = field(default="", repr=False)
    entity: str = ""
    role: str = ""
    uses: int = 0

    def as_token(self) -> Token:
        """The view `checks.check_token_usable` judges: owner, account and expiry."""
        return Token(
            self.token_id,
            self.token_secret,
            self.consumer_key,
            entity=self.entity,
            role=self.role,
            expires_at=self.expires_at,
            account=self.realm or None,
        )


@mypyc_attr(allow_interpreted_subclasses=True)
class Identity:
    """Who a verified request speaks for; what `scope["tba"]` holds. Read-only.

    A plain class with properties rather than a frozen dataclass: one is built per accepted
    request, and the compiled build constructs a plain class about ten times faster.
    """

    __slots__ = ("_consumer_key", "_entity", "_realm", "_role", "_scheme", "_scopes", "_token_id")

    def __init__(
        self,
        consumer_key: str,
        token_id: str,
        realm: str,
        entity: str,
        role: str,
        *,
        scheme: str = "tba",
        scopes: tuple[str, ...] = (),
    ):
        self._consumer_key = consumer_key
        self._token_id = token_id
        self._realm = realm
        self._entity = entity
        self._role = role
        self._scheme = scheme
        self._scopes = scopes

    @property
    def consumer_key(self) -> str:
        return self._consumer_key

    @property
    def token_id(self) -> str:
        return self._token_id

    @property
    def realm(self) -> str:
        return self._realm

    @property
    def entity(self) -> str:
        """The entity (user) the token was issued to (NetSuite rule N18)."""
        return self._entity

    @property
    def role(self) -> str:
        return self._role

    @property
    def scheme(self) -> str:
        """`tba` (OAuth 1.0) or `oauth2` (a bearer token); `token_id` is then the mapping's
        certificate ID, as stable per client as a TBA token."""
        return self._scheme

    @property
    def scopes(self) -> tuple[str, ...]:
        """An OAuth 2.0 token's scopes (`restlets`, `rest_webservices`); none for TBA."""
        return self._scopes

    def _fields(self) -> tuple[str, str, str, str, str, str, tuple[str, ...]]:
        return (
            self._consumer_key,
            self._token_id,
            self._realm,
            self._entity,
            self._role,
            self._scheme,
            self._scopes,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Identity(consumer_key={self._consumer_key!r}, token_id={self._token_id!r}, "
            f"realm={self._realm!r}, entity={self._entity!r}, role={self._role!r}"
            + ("" if self._scheme == "tba" else f", scheme={self._scheme!r}")
            + ")"
        )
