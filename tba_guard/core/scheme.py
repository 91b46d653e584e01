"""An `Authorization` scheme as a unit: its checks in order and the codes they raise; and the
vocabulary every scheme's declaration uses (`Check`, `Need`, the `Verification` it passes).

The guard dispatches each request to the scheme its header names (`OAuth` today, the TBA
sequence) and runs that scheme's declaration; nothing else knows the scheme. Adding one is a
module that declares a `Scheme` and one `register_scheme` call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from .checks import Step
from .errors import CATALOG, CatalogEntry, ErrorCode
from .protocols import CredentialStore, ReplayKey, ReplayStore, TokenStore, UserLookup
from .records import Certificate, Identity, Integration, RequestToken, Token
from .request import OAuthRequest
from .settings import GuardSettings

ALL_STEPS: Final = frozenset(Step)


class Limits:
    """The settings the checks read, copied into a compiled object once per settings object:
    each field of the frozen settings costs a generic attribute lookup per read."""

    __slots__ = (
        "brownouts",
        "feature_enabled",
        "header_max_length",
        "header_max_parameters",
        "nonce_max_length",
        "nonce_min_length",
        "oauth2",
        "realm",
        "replay_ttl",
        "settings",
        "signature_methods",
        "timestamp_tolerance",
    )

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings  # what they were copied from, to tell when it is replaced
        self.feature_enabled = settings.feature_enabled
        self.header_max_length = settings.header_max_length
        self.header_max_parameters = settings.header_max_parameters
        self.signature_methods = settings.signature_methods
        self.timestamp_tolerance = settings.timestamp_tolerance
        self.nonce_min_length = settings.nonce_min_length
        self.nonce_max_length = settings.nonce_max_length
        self.realm = settings.realm
        self.brownouts = settings.brownouts
        # OAuth 2.0's keys and verified-token cache, when the guard serves it (`Guard.limits`).
        self.oauth2: Any = None
        # Long enough that a key outlives every moment its timestamp could still pass.
        self.replay_ttl = 2 * settings.timestamp_tolerance


class Verification:
    """One request on its way through the sequence: the request, the stores it is checked
    against, and what each passed check established for the checks after it.

    The `looked_up_*` and `signed` flags record the work done, so that in opaque mode a
    rejection can do the work it skipped and cost what an acceptance costs.
    """

    __slots__ = (
        "access_token",
        "assertion",
        "callback",
        "certificate",
        "claims",
        "credentials",
        "form",
        "header",
        "integration",
        "key",
        "limits",
        "looked_up_token",
        "looked_up_user",
        "now",
        "replay_store",
        "request",
        "request_token",
        "scopes",
        "signed",
        "step",
        "timestamp",
        "token",
        "token_secret",
        "tokens",
        "user_lookup",
        "verified",
        "well_formed",
    )

    def __init__(
        self,
        request: OAuthRequest,
        step: Step,
        settings: GuardSettings,
        *,
        now: float,
        credentials: CredentialStore,
        replay_store: ReplayStore,
        tokens: TokenStore | None = None,
        user_lookup: UserLookup | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.request = request
        self.step = step
        self.limits = Limits(settings) if limits is None else limits  # settings, if none given
        self.now = now
        self.credentials = credentials
        self.replay_store = replay_store
        self.tokens = tokens
        self.user_lookup = user_lookup
        self.timestamp: int | None = None
        self.key: ReplayKey | None = None
        self.integration: Integration | None = None
        self.token: Token | None = None
        self.request_token: RequestToken | None = None
        self.token_secret: str | None = None  # step 9 finds it; none exists at step one
        self.callback = ""
        # OAuth 2.0: the token endpoint's form, its assertion, the assertion's JOSE header and
        # verified claims; a bearer token's verified contents; the mapping; the scopes.
        self.form: dict[str, str] | None = None
        self.assertion: str | None = None
        self.header: dict[str, Any] | None = None
        self.claims: dict[str, Any] | None = None
        self.access_token: Any = None  # oauth2.VerifiedToken
        self.certificate: Certificate | None = None
        self.scopes: tuple[str, ...] = ()
        self.well_formed = False  # checks 1 to 7 passed: credentials are looked up
        self.looked_up_token = False
        self.looked_up_user = False
        self.signed = False
        self.verified = False


class Need:
    """What a check reads that an earlier one establishes (a field of `Verification`), and how
    `explain` says it is missing when that earlier check failed."""

    __slots__ = ("field", "unknown")

    def __init__(self, field: str, unknown: str) -> None:
        self.field = field
        self.unknown = unknown

    def __repr__(self) -> str:
        return f"Need({self.field!r})"


class Check:
    """One entry of the sequence: its number in the documented order, the codes it raises,
    the steps it belongs to, and the function that runs it (returning an awaitable when it
    must wait for a store, None when done). The rest tells `explain`, which runs every check,
    what it may and may not do: what the check `needs`, that it `writes` to a store (never run
    by explain), what every later check misses when it fails (`stops`), what to `recover` for
    the checks after it when it fails, and a `note` on its verdict."""

    __slots__ = (
        "codes",
        "label",
        "needs",
        "note",
        "number",
        "recover",
        "run",
        "steps",
        "stops",
        "writes",
    )

    def __init__(
        self,
        number: str,
        codes: tuple[ErrorCode, ...],
        run: Callable[[Verification], Awaitable[None] | None],
        *,
        steps: frozenset[Step] = ALL_STEPS,
        needs: tuple[Need, ...] = (),
        writes: bool = False,
        stops: Need | None = None,
        recover: Callable[[Verification], None] | None = None,
        note: str = "",
        label: str = "",
    ) -> None:
        self.number = number
        self.codes = codes
        self.run = run
        self.steps = steps
        self.needs = needs
        self.writes = writes
        self.stops = stops
        self.recover = recover
        self.note = note
        self.label = label  # for a check that raises no code of its own

    @property
    def name(self) -> str:
        """The codes it raises, as the docs' table and `explain` name it."""
        return self.label or " / ".join(self.codes)

    def __repr__(self) -> str:
        return f"Check({self.number!r}, {self.name!r})"


class Scheme:
    """One scheme: the word of the `Authorization` header it answers, its checks (`sequence`,
    and per step those before the body is first needed and those from there on), who a
    verified request speaks for, and whether a request's signature covers its body."""

    __slots__ = (
        "after_body",
        "audit_name",
        "before_body",
        "catalog",
        "enabled",
        "identity",
        "name",
        "sequence",
        "wants_body",
        "who",
    )

    def __init__(
        self,
        name: str,
        sequence: tuple[Check, ...],
        *,
        body_from: int,
        identity: Callable[[Verification], Identity],
        wants_body: Callable[[OAuthRequest], bool],
        codes: Iterable[ErrorCode],
        who: Callable[[Verification], tuple[str, str]] | None = None,
        audit_name: str = "tba",
        enabled: Callable[[GuardSettings], bool] | None = None,
    ) -> None:
        self.name = name
        # Whether a guard with these settings dispatches to it (None: every guard does).
        self.enabled = enabled
        # The audit's consumer key and token for a request of this scheme (None: the OAuth
        # header's), and the scheme the audit names.
        self.who = who
        self.audit_name = audit_name
        self.sequence = sequence
        # Split and filtered once: a request runs its step's checks without testing each one.
        self.before_body = _by_step(sequence[:body_from])
        self.after_body = _by_step(sequence[body_from:])
        self.identity = identity
        self.wants_body = wants_body
        self.catalog: Mapping[ErrorCode, CatalogEntry] = {code: CATALOG[code] for code in codes}

    def __repr__(self) -> str:
        return f"Scheme({self.name!r})"


def _by_step(checks: tuple[Check, ...]) -> dict[Step, tuple[Check, ...]]:
    return {step: tuple(check for check in checks if step in check.steps) for step in Step}


#: The schemes a `Guard` dispatches to unless it is given its own, by lower-cased header word.
SCHEMES: Final[dict[str, Scheme]] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Make `scheme` one that every guard built afterwards dispatches to."""
    SCHEMES[scheme.name.lower()] = scheme
    return scheme


def scheme_word(authorization: str | None) -> str:
    """The scheme an `Authorization` value names, lower-cased ("" for none)."""
    words = authorization.split(None, 1) if authorization else ()
    return words[0].lower() if words else ""
