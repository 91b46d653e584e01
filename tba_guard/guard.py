"""`Guard`: runs the core's declared sequence of checks against the configured stores.

It sits above the stores because it builds the ones the settings name when none is given.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import cast

from mypy_extensions import mypyc_attr

from .core.audit import AuditEvent, AuditHook, is_heard, record
from .core.checks import Clock, Step, realm_sent
from .core.errors import OPERATIONAL_CODES, TBAError
from .core.protocols import CredentialStore, ReplayStore, TokenStore, UserLookup
from .core.records import Identity
from .core.request import OAuthRequest, request_from_url
from .core.sequence import AFTER_BODY, BEFORE_BODY, Limits, Verification
from .core.settings import GuardSettings
from .core.signature import signature_matches
from .stores import credential_store_for, replay_store_for


@mypyc_attr(allow_interpreted_subclasses=True)
class Guard:
    """Runs the checks in the documented order. One instance serves every request: it keeps
    no per-request state, only the settings and the two stores.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock | None = None,
        audit_hooks: Iterable[AuditHook] = (),
    ) -> None:
        self.settings = settings = settings or GuardSettings()
        # None for the wall clock: a plain default keeps the signature readable when compiled.
        self.clock = clock = time.time if clock is None else clock
        # `is None`, not `or`: an empty store may be falsy (`MemoryReplayStore` has a length).
        self.credentials = credential_store_for(settings) if credentials is None else credentials
        self.replay_store = (
            replay_store_for(settings, clock=clock) if replay_store is None else replay_store
        )
        self.audit_hooks = tuple(audit_hooks)
        # Opaque mode signs rejected requests with this, so that they cost what a real check costs.
        self._dummy_secret = secrets.token_urlsafe(32)
        self._limits = Limits(settings)

    @property
    def replay_ttl(self) -> int:
        """How long a replay key is kept: `Limits.replay_ttl`."""
        return self.limits.replay_ttl

    @property
    def limits(self) -> Limits:
        """The settings the checks read, copied again whenever `settings` is replaced."""
        if self._limits.settings is not self.settings:
            self._limits = Limits(self.settings)
        return self._limits

    def start(
        self,
        request: OAuthRequest,
        step: Step = Step.RESOURCE,
        *,
        tokens: TokenStore | None = None,
        user_lookup: UserLookup | None = None,
    ) -> Verification:
        """A request's state for the sequence, against this guard's settings and stores (and,
        for the flow's steps, its token store and user directory)."""
        limits = self.limits
        return Verification(
            request,
            step,
            limits.settings,
            now=self.clock(),
            credentials=self.credentials,
            replay_store=self.replay_store,
            tokens=tokens,
            user_lookup=user_lookup,
            limits=limits,
        )

    async def check_before_body(self, request: OAuthRequest) -> Verification:
        """Steps 1 to 9 for a protected resource: all that needs no body, so that a request
        they refuse is answered before its body is read. Does not audit; the caller does."""
        verification = self.start(request)
        await self.run(verification, body=False)
        return verification

    async def check_body_and_signature(
        self, request: OAuthRequest, verification: Verification
    ) -> Identity:
        """The rest, once `request.body` holds what the signature covers: the form body's
        parameters, step 10, and the replay claim. Does not audit; the caller does."""
        await self.run(verification, body=True)
        return self.identity(verification)

    def identity(self, verification: Verification) -> Identity:
        """Who a verified request for a protected resource speaks for."""
        token, integration = verification.token, verification.integration
        assert integration is not None
        assert token is not None
        return Identity(
            consumer_key=integration.consumer_key,
            token_id=token.token_id,
            realm=verification.limits.realm or realm_sent(verification.request.oauth),
            entity=token.entity,
            role=token.role,
        )

    async def run(self, verification: Verification, *, body: bool) -> None:
        """The step's checks before the body, or from the body on, fail-fast. In opaque mode a
        credential rejection first does the work it skipped (`equal_work`)."""
        step = verification.step
        try:
            for check in AFTER_BODY[step] if body else BEFORE_BODY[step]:
                if check.is_async:
                    await cast(Awaitable[None], check.run(verification))
                else:
                    check.run(verification)
        except TBAError as error:
            if self.settings.error_detail == "opaque" and error.code not in OPERATIONAL_CODES:
                await self.equal_work(verification)
            raise

    async def equal_work(self, verification: Verification) -> None:
        """The lookups and the signature a rejection skipped, with the results thrown away.

        In opaque mode the wire does not say which check failed, and the work must not say it
        either: an unknown consumer key, a blocked integration, an unusable token and a bad
        signature each cost the same lookups and one signature (against a random dummy secret
        when the real one is unknown), so timing cannot reveal which keys or tokens exist.
        Requests refused before credentials are looked up (steps 1 to 7) cost no lookup.
        """
        v = verification
        if not v.well_formed or v.verified:
            return
        oauth, step = v.request.oauth, v.step
        with contextlib.suppress(Exception):  # the verdict is already decided
            if step is Step.RESOURCE and not v.looked_up_token:
                await self.credentials.token(oauth["oauth_token"])
            if step is Step.ACCESS_TOKEN and not v.looked_up_token and v.tokens is not None:
                await v.tokens.request_token(oauth["oauth_token"])
            if step is Step.ACCESS_TOKEN and not v.looked_up_user and v.user_lookup is not None:
                await v.user_lookup("")
        if not v.signed:
            signature_matches(v.request, self._dummy_secret, self._dummy_secret)

    async def verify(self, request: OAuthRequest) -> Identity:
        """Verify a request for a protected resource, body included; return who it speaks for.

        Raises `TBAError` with the first failing check's code. Accepted or not, the decision
        goes to the audit log.
        """
        try:
            verification = await self.check_before_body(request)
            identity = await self.check_body_and_signature(request, verification)
        except TBAError as error:
            self.audit(request, error)
            raise
        self.audit(request, None)
        return identity

    async def verify_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes | str = b"",
    ) -> Identity:
        """The single call: verify a whole request given as method, URL, headers and body."""
        return await self.verify(request_from_url(method, url, headers, body))

    def audit(self, request: OAuthRequest, error: TBAError | None) -> None:
        if not is_heard("accepted" if error is None else "rejected", self.audit_hooks):
            return
        oauth = request.oauth
        record(
            AuditEvent(
                outcome="accepted" if error is None else "rejected",
                code=error.code.value if error else "",
                consumer_key=oauth.get("oauth_consumer_key", ""),
                token_id=oauth.get("oauth_token", ""),
                realm=realm_sent(oauth) or (self.settings.realm or ""),
                method=request.method,
                path=request.path,
                client=request.client,
                time=self.clock(),
                reason=error.reason if error else "",
            ),
            self.audit_hooks,
        )
