"""The storage boundaries the core checks against: small async protocols that the stores
(memory, Redis, a database) implement. Declared here, below the stores, so the checks depend on
the shape of a store and never on one store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from .records import Certificate, Decision, Integration, RequestToken, Token, User

#: How long an expired or used request token is remembered, to name the reason at step three.
TOMBSTONE_SECONDS = 3600
#: Live request tokens per integration unless the settings say otherwise.
DEFAULT_QUOTA = 1000


class ReplayKey(NamedTuple):
    consumer_key: str
    token: str  # empty on the request-token step
    nonce: str
    timestamp: int

    def identity(self) -> bytes:
        """The key as unambiguous bytes: lengths prefixed, so no two keys can collide."""
        ck, token, nonce = self.consumer_key, self.token, self.nonce
        text = f"{len(ck)}:{ck}{len(token)}:{token}{len(nonce)}:{nonce}{self.timestamp}"
        return text.encode("utf-8", "surrogateescape")


class ReplayStoreError(Exception):
    """The store cannot answer (down, timed out, full). The guard fails closed with a 503."""


class ReplayStore(Protocol):
    """The storage boundary of replay protection. Implement both coroutines to add a store."""

    async def seen(self, key: ReplayKey) -> bool:
        """Whether the key was claimed and is still remembered. Reads only."""
        ...

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        """Remember the key for at least `ttl` seconds. False when it was already claimed."""
        ...


class SignedReplayStore(Protocol):
    """What a replay store may keep besides its keys (the built-in ones do): a short
    fingerprint of the accepted signature, so that a `NonceUsed` tells a resend (the same
    signature again) from a collision (another request drew the nonce). Optional: a
    `ReplayStore` without these methods keeps working, and the diagnosis says it cannot tell.
    The guard calls `claim_signed` instead of `claim` where the class defining `claim` (or one
    below it) defines it, so a subclass overriding `claim` alone is still called."""

    async def claim_signed(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        """`claim`, keeping a fingerprint of `signature` beside the key, in the same write."""
        ...

    async def signed_alike(self, key: ReplayKey, signature: str) -> bool | None:
        """Whether the key was claimed with this signature (True) or another (False); None when
        the store cannot tell (forgotten, or claimed without a fingerprint). Reads only."""
        ...


class ImmediateReplayStore(Protocol):
    """What an in-process replay store may add: its answers without a coroutine, one object
    less per check. The guard calls these instead of awaiting `seen` and `claim_signed` where
    the class defining those defines these too, so an override of the awaitable alone is called."""

    def seen_now(self, key: ReplayKey) -> bool: ...

    def claim_signed_now(self, key: ReplayKey, ttl: int, signature: str) -> bool: ...


class CredentialStore(Protocol):
    """Where the guard looks up integrations and tokens. Return None for an unknown key."""

    async def integration(self, consumer_key: str) -> Integration | None: ...

    async def token(self, token_id: str) -> Token | None: ...


class ImmediateCredentialStore(Protocol):
    """The same for a credential store that holds its records in memory: `integration` and
    `token` answered at once, under the same rule."""

    def integration_now(self, consumer_key: str) -> Integration | None: ...

    def token_now(self, token_id: str) -> Token | None: ...


class ClientStore(Protocol):
    """What OAuth 2.0 looks up besides: the integration by its client ID, and the mapping an
    assertion's `kid` names. The built-in credential stores are both; a store of one's own
    that is only a `CredentialStore` serves TBA alone (`serves_clients` tells which)."""

    async def client(self, client_id: str) -> Integration | None: ...

    async def certificate(self, certificate_id: str) -> Certificate | None: ...


class TokenStoreError(Exception):
    """The token store cannot answer (down, timed out, full). The flow fails closed: 503."""


class RequestTokenQuotaExceeded(TokenStoreError):
    """One integration holds its quota of live request tokens: refused for it alone
    (`RequestTokenLimit`), while every other integration keeps getting tokens."""

    def __init__(self, consumer_key: str, quota: int) -> None:
        super().__init__(f"integration holds {quota} live request tokens, its quota")
        self.consumer_key, self.quota = consumer_key, quota


UserLookup = Callable[[str], Awaitable[User | None]]


class TokenStore(Protocol):
    """The storage boundary of the flow. Every method may raise `TokenStoreError`."""

    async def put_request_token(self, token: RequestToken) -> None:
        """Store a new token; `RequestTokenQuotaExceeded` when its integration is at quota."""
        ...

    async def request_token(self, token_id: str) -> RequestToken | None:
        """The token as it is now (pending, decided or used), or None once forgotten."""
        ...

    async def decide(
        self, token_id: str, decision: Decision, *, verifier: str, entity: str, role: str
    ) -> bool:
        """Record the user's decision if none was recorded yet. False otherwise (atomic)."""
        ...

    async def consume(self, token_id: str) -> bool:
        """Count one exchange. True only for the first (atomic)."""
        ...

    async def put_access_token(self, token: Token) -> None: ...

    async def access_token(self, token_id: str) -> Token | None: ...


def serves_clients(store: object) -> bool:
    """Whether `store` is also a `ClientStore` (checked by its methods: the compiled build's
    protocols cannot be checked with `isinstance`)."""
    return hasattr(store, "client") and hasattr(store, "certificate")
