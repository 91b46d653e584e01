"""The order of checks, declared once. `Guard` runs it fail-fast for protected resources and the
flow's steps one and three; `tba-guard explain` runs it to the end and reports every verdict.

Each entry names the steps it belongs to and adapts one function of `checks` to a
`Verification`, the state of one request as it passes: what a check establishes (the timestamp,
the integration, the token) is what a later one reads. The entries before `BODY` need no body,
so a request they refuse is answered before its body is read; cheap checks run before lookups,
and only a request whose signature verified may write to the replay store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from .checks import (
    Step,
    check_authorization_flow,
    check_callback,
    check_entity_and_role,
    check_feature_enabled,
    check_form_body,
    check_integration_enabled,
    check_integration_known,
    check_nonce_length,
    check_nonce_unused,
    check_request_token,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_timestamp,
    check_token_usable,
    check_user_active,
    check_verifier,
    check_version,
    claim_nonce,
    credentials_unavailable,
    look_up_token,
    replay_key,
    token_store_unavailable,
)
from .errors import TBAError
from .protocols import CredentialStore, ReplayKey, ReplayStore, TokenStore, UserLookup
from .records import Integration, RequestToken, Token
from .request import OAuthRequest, parse_parameters
from .settings import GuardSettings

ALL_STEPS: Final = frozenset(Step)
RESOURCE: Final = frozenset({Step.RESOURCE})
FLOW: Final = frozenset({Step.REQUEST_TOKEN, Step.ACCESS_TOKEN})
REQUEST_TOKEN: Final = frozenset({Step.REQUEST_TOKEN})
ACCESS_TOKEN: Final = frozenset({Step.ACCESS_TOKEN})


class Limits:
    """The settings the checks read, copied into a compiled object once per settings object:
    each field of the frozen settings costs a generic attribute lookup per read."""

    __slots__ = (
        "feature_enabled",
        "header_max_length",
        "header_max_parameters",
        "nonce_max_length",
        "nonce_min_length",
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
        # Long enough that a key outlives every moment its timestamp could still pass.
        self.replay_ttl = 2 * settings.timestamp_tolerance


class Verification:
    """One request on its way through the sequence: the request, the stores it is checked
    against, and what each passed check established for the checks after it.

    The `looked_up_*` and `signed` flags record the work done, so that in opaque mode a
    rejection can do the work it skipped and cost what an acceptance costs.
    """

    __slots__ = (
        "callback",
        "credentials",
        "integration",
        "key",
        "limits",
        "looked_up_token",
        "looked_up_user",
        "now",
        "replay_store",
        "request",
        "request_token",
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
        self.well_formed = False  # checks 1 to 7 passed: credentials are looked up
        self.looked_up_token = False
        self.looked_up_user = False
        self.signed = False
        self.verified = False


class Check:
    """One entry of the sequence: its number and name in the documented order, the steps it
    belongs to, and the function that runs it (returning an awaitable when `is_async`)."""

    __slots__ = ("is_async", "name", "needs", "number", "run", "steps", "writes")

    def __init__(
        self,
        number: str,
        name: str,
        run: Callable[[Verification], object],
        *,
        steps: frozenset[Step] = ALL_STEPS,
        is_async: bool = False,
        needs: tuple[str, ...] = (),
        writes: bool = False,
    ) -> None:
        self.number = number
        self.name = name
        self.run = run
        self.steps = steps
        self.is_async = is_async
        self.needs = needs  # what earlier checks must have established for this one to run
        self.writes = writes  # changes a store: `explain` never runs it

    def __repr__(self) -> str:
        return f"Check({self.number!r}, {self.name!r})"


# --- the entries: each adapts one check to the state of the request ----------------------------


def feature_enabled(v: Verification) -> None:
    check_feature_enabled(v.limits.feature_enabled)


def parameters_present(v: Verification) -> None:
    s = v.limits
    parse_parameters(
        v.request,
        header_max_length=s.header_max_length,
        header_max_parameters=s.header_max_parameters,
    )
    check_required_parameters(v.request, v.step)


def version_supported(v: Verification) -> None:
    check_version(v.request.oauth)


def signature_method_accepted(v: Verification) -> None:
    request = v.request
    check_signature_method(request.oauth, v.limits.signature_methods, secure=request.secure)


def timestamp_in_window(v: Verification) -> None:
    v.timestamp = check_timestamp(
        v.request.oauth, now=v.now, tolerance=v.limits.timestamp_tolerance
    )


def nonce_length(v: Verification) -> None:
    s = v.limits
    check_nonce_length(v.request.oauth, minimum=s.nonce_min_length, maximum=s.nonce_max_length)


def nonce_unused(v: Verification) -> Awaitable[None]:
    assert v.timestamp is not None
    v.key = key = replay_key(v.request.oauth, v.timestamp)
    return check_nonce_unused(v.replay_store, key)  # the check's own coroutine: one layer less


async def integration_known(v: Verification) -> None:
    v.well_formed = True  # checks 1 to 7 passed: credentials are looked up from here on
    v.integration = await check_integration_known(
        v.credentials, v.request.oauth, realm=v.limits.realm, step=v.step
    )


def integration_enabled(v: Verification) -> None:
    assert v.integration is not None
    check_integration_enabled(v.integration, v.request.oauth, step=v.step)


def authorization_flow_allowed(v: Verification) -> None:
    assert v.integration is not None
    check_authorization_flow(v.integration)


async def token_usable(v: Verification) -> None:
    assert v.integration is not None
    oauth = v.request.oauth
    v.looked_up_token = True
    v.token = await look_up_token(v.credentials, oauth["oauth_token"])
    if v.token is not None:  # known to explain even when the token is unusable
        v.token_secret = v.token.token_secret
    check_token_usable(v.token, oauth, v.integration, realm=v.limits.realm, now=v.now)


def no_token_yet(v: Verification) -> None:
    """Step one signs with the consumer secret alone: the token secret is empty."""
    v.token_secret = ""


def token_entity_and_role_active(v: Verification) -> None:
    assert v.token is not None
    check_entity_and_role(v.token)


async def request_token_usable(v: Verification) -> None:
    assert v.integration is not None
    oauth = v.request.oauth
    v.looked_up_token = True
    found = None
    if v.tokens is not None:
        try:
            found = await v.tokens.request_token(oauth["oauth_token"])
        except Exception as exc:
            raise token_store_unavailable(exc) from exc
    if found is not None:
        v.request_token, v.token_secret = found, found.token_secret
    check_request_token(found, oauth, v.integration, realm=v.limits.realm, now=v.now)


async def consenting_user_active(v: Verification) -> None:
    """The user who allowed must still be usable in the role they chose (Deny is step 11's)."""
    token = v.request_token
    assert token is not None
    if token.decision != "allowed" or v.user_lookup is None:
        return
    v.looked_up_user = True
    try:
        user = await v.user_lookup(token.entity)
    except Exception as exc:  # a failing directory fails closed, never a 500
        raise credentials_unavailable(exc, "user lookup") from exc
    check_user_active(user, token.role)


def form_body_read(v: Verification) -> None:
    check_form_body(v.request)


def signature_matches(v: Verification) -> None:
    assert v.integration is not None
    assert v.token_secret is not None
    v.signed = True
    check_signature(v.request, v.integration.consumer_secret, v.token_secret)
    v.verified = True


def callback_registered(v: Verification) -> None:
    assert v.integration is not None
    v.callback = check_callback(v.request.oauth, v.integration)


async def verifier_matches(v: Verification) -> None:
    """A verifier can be tried once: a wrong one, signed correctly, uses the request token up."""
    assert v.request_token is not None
    try:
        check_verifier(v.request_token, v.request.oauth)
    except TBAError:
        # Always true: a request token was found, so there is a token store (explain, which
        # has none, stops at check 9 and never runs this writing check).
        if v.tokens is not None:  # pragma: no branch
            try:
                await v.tokens.consume(v.request_token.token_id)
            except Exception as exc:
                raise token_store_unavailable(exc) from exc
        raise


def nonce_claimed(v: Verification) -> Awaitable[None]:
    assert v.key is not None
    return claim_nonce(v.replay_store, v.key, v.limits.replay_ttl)


# --- the declaration ----------------------------------------------------------------------------

_INTEGRATION = "UnknownIntegration / IntegrationBlocked"
_TOKEN = "TokenRejected / EntityOrRoleDisabled"

#: Every check, in order. Numbers are NetSuite's; one number may span several entries.
SEQUENCE: Final[tuple[Check, ...]] = (
    Check("1", "FeatureDisabled", feature_enabled),
    Check("2", "MissingRequiredParameter", parameters_present),
    Check("3", "VersionRejected", version_supported),
    Check("4", "UnknownAlgorithm", signature_method_accepted),
    Check("5", "InvalidTimestamp", timestamp_in_window),
    Check("6", "NonceRejected", nonce_length),
    Check("7", "NonceUsed", nonce_unused, is_async=True, needs=("timestamp",)),
    Check("8", _INTEGRATION, integration_known, is_async=True),
    Check("8", _INTEGRATION, integration_enabled, needs=("integration",)),
    Check("8", _INTEGRATION, authorization_flow_allowed, steps=FLOW, needs=("integration",)),
    Check("9", _TOKEN, token_usable, steps=RESOURCE, is_async=True, needs=("integration",)),
    Check("9", _TOKEN, token_entity_and_role_active, steps=RESOURCE, needs=("token",)),
    Check("9", "no token at step one", no_token_yet, steps=REQUEST_TOKEN),
    Check(
        "9",
        _TOKEN,
        request_token_usable,
        steps=ACCESS_TOKEN,
        is_async=True,
        needs=("integration",),
    ),
    Check(
        "9",
        _TOKEN,
        consenting_user_active,
        steps=ACCESS_TOKEN,
        is_async=True,
        needs=("request_token",),
    ),
    # BODY: what follows reads the body, when the signature covers it.
    Check("10", "InvalidSignature", form_body_read),
    Check("10", "InvalidSignature", signature_matches, needs=("integration", "token_secret")),
    Check(
        "11", "InvalidCallback", callback_registered, steps=REQUEST_TOKEN, needs=("integration",)
    ),
    Check(
        "11",
        "InvalidVerifier",
        verifier_matches,
        steps=ACCESS_TOKEN,
        is_async=True,
        needs=("request_token",),
        writes=True,
    ),
    Check("12", "claim the replay key", nonce_claimed, is_async=True, needs=("key",), writes=True),
)
BODY: Final = next(i for i, check in enumerate(SEQUENCE) if check.run is form_body_read)


def checks_for(step: Step, *, body: bool) -> tuple[Check, ...]:
    """The step's checks before the body is read (`body=False`) or from there on."""
    part = SEQUENCE[BODY:] if body else SEQUENCE[:BODY]
    return tuple(check for check in part if step in check.steps)


BEFORE_BODY: Final = {step: checks_for(step, body=False) for step in Step}
AFTER_BODY: Final = {step: checks_for(step, body=True) for step in Step}
