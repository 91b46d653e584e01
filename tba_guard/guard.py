"""`Guard`: runs the core's sequence of checks against the configured stores."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable, Mapping

from .core.audit import AuditEvent, AuditHook, is_heard, record
from .core.checks import (
    CheckedCredentials,
    Clock,
    Step,
    check_authorization_flow,
    check_entity_and_role,
    check_feature_enabled,
    check_form_body,
    check_integration_enabled,
    check_integration_known,
    check_nonce_length,
    check_nonce_unused,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_timestamp,
    check_token,
    check_version,
    claim_nonce,
    realm_sent,
    replay_key,
)
from .core.errors import OPERATIONAL_CODES, TBAError
from .core.protocols import CredentialStore, ReplayKey, ReplayStore
from .core.records import Identity, Integration, Token
from .core.request import OAuthRequest, parse_parameters, request_from_url
from .core.settings import GuardSettings
from .core.signature import signature_matches
from .stores import credential_store_for, replay_store_for


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
        clock: Clock = time.time,
        audit_hooks: Iterable[AuditHook] = (),
    ) -> None:
        self.settings = settings = settings or GuardSettings()
        self.clock = clock
        self.credentials = credentials or credential_store_for(settings)
        self.replay_store = replay_store or replay_store_for(settings, clock=clock)
        self.audit_hooks = tuple(audit_hooks)
        # Opaque mode signs rejected requests with this, so that they cost what a real check costs.
        self._dummy_secret = secrets.token_urlsafe(32)

    @property
    def replay_ttl(self) -> int:
        """Long enough that a key outlives every moment its timestamp could still pass."""
        return 2 * self.settings.timestamp_tolerance

    async def check_well_formed(self, request: OAuthRequest, step: Step) -> ReplayKey:
        """Steps 1 to 7: everything that needs no credential, ending with the replay read."""
        s = self.settings
        check_feature_enabled(s.feature_enabled)
        parse_parameters(
            request,
            max_header_length=s.max_header_length,
            max_header_parameters=s.max_header_parameters,
        )
        check_required_parameters(request, step)
        oauth = request.oauth
        check_version(oauth)
        check_signature_method(oauth, s.signature_methods, secure=request.secure)
        timestamp = check_timestamp(oauth, now=self.clock(), tolerance=s.timestamp_tolerance)
        check_nonce_length(oauth, minimum=s.nonce_min_length, maximum=s.nonce_max_length)
        key = replay_key(oauth, timestamp)
        await check_nonce_unused(self.replay_store, key)
        return key

    async def check_integration(self, request: OAuthRequest, step: Step) -> Integration:
        """Step 8."""
        integration = await check_integration_known(
            self.credentials, request.oauth, realm=self.settings.realm, step=step
        )
        check_integration_enabled(integration, request.oauth, step=step)
        if step is not Step.RESOURCE:
            check_authorization_flow(integration)
        return integration

    async def check_credentials(self, request: OAuthRequest) -> tuple[Integration, Token]:
        """Steps 8 and 9 for a protected resource.

        In opaque mode the wire does not say which of these failed, and the work must not say it
        either: an unknown consumer key, a blocked integration, an unusable token and a bad
        signature each cost one integration lookup, one token lookup and one signature (against
        a random dummy secret when the real one is unknown), so timing cannot reveal which
        consumer keys or tokens exist.
        """
        token_looked_up = False
        try:
            integration = await self.check_integration(request, Step.RESOURCE)
            token_looked_up = True
            token = await check_token(
                self.credentials,
                request.oauth,
                integration,
                realm=self.settings.realm,
                now=self.clock(),
            )
            check_entity_and_role(token)
        except TBAError as error:
            if self.settings.error_detail == "opaque" and error.code not in OPERATIONAL_CODES:
                await self._dummy_credential_work(request, lookup_token=not token_looked_up)
            raise
        return integration, token

    async def _dummy_credential_work(self, request: OAuthRequest, *, lookup_token: bool) -> None:
        """The lookups and the signature a rejection skipped, with the results thrown away."""
        if lookup_token:
            with contextlib.suppress(Exception):  # the verdict is already decided
                await self.credentials.token(request.oauth["oauth_token"])
        signature_matches(request, self._dummy_secret, self._dummy_secret)

    async def check_before_body(self, request: OAuthRequest) -> CheckedCredentials:
        """Steps 1 to 9 for a protected resource: all that needs no body, so that a request
        they refuse is answered before its body is read. Does not audit; the caller does."""
        key = await self.check_well_formed(request, Step.RESOURCE)
        integration, token = await self.check_credentials(request)
        return key, integration, token

    async def check_body_and_signature(
        self, request: OAuthRequest, checked: CheckedCredentials
    ) -> Identity:
        """The rest, once `request.body` holds what the signature covers: the form body's
        parameters, step 10, and the replay claim. Does not audit; the caller does."""
        key, integration, token = checked
        check_form_body(request)
        check_signature(request, integration.consumer_secret, token.token_secret)
        await claim_nonce(self.replay_store, key, self.replay_ttl)
        return Identity(
            consumer_key=integration.consumer_key,
            token_id=token.token_id,
            realm=self.settings.realm or realm_sent(request.oauth),
            entity=token.entity,
            role=token.role,
        )

    async def verify(self, request: OAuthRequest) -> Identity:
        """Verify a request for a protected resource, body included; return who it speaks for.

        Raises `TBAError` with the first failing check's code. Accepted or not, the decision
        goes to the audit log.
        """
        try:
            checked = await self.check_before_body(request)
            identity = await self.check_body_and_signature(request, checked)
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
