"""Step two of the flow: the consent page at `authorize_path`, where a signed-in user picks a
role and allows or denies a request token; the browser is then sent back to the callback.

`ConsentPages` holds what the page needs: the settings, the token store, who is signed in
(`current_user`, or the built-in sign-in for the `users` of the settings, throttled), the key
that signs the session and CSRF cookies, and the HTML of `templates/`. `TBAFlow` builds it and
hands it the requests for `authorize_path`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib import resources
from string import Template
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ..core.audit import AuditEvent, record
from ..core.checks import Clock
from ..core.errors import TBAError
from ..core.protocols import CredentialStore, TokenStore, TokenStoreError, UserLookup
from ..core.records import RequestToken, User
from ..core.request import FORM_CONTENT_TYPE
from ..core.settings import GuardSettings
from ..guard import Guard
from .scope import RequestReader

#: The host application says who is signed in (None: nobody) from the consent page's request.
CurrentUser = Callable[[Request], Awaitable[User | None]]

SESSION_COOKIE = "tba_session"
CSRF_COOKIE = "tba_csrf"
#: Over HTTPS the cookies carry this prefix: the browser then takes them only from this very
#: host over HTTPS, so a sibling subdomain cannot plant one (login CSRF by cookie injection).
HOST_PREFIX = "__Host-"
SESSION_SECONDS = 3600
_THROTTLE_MAX_KEYS = 100_000  # names and addresses remembered per process, oldest dropped first
_PAGE_CONTEXT = "tba_guard.page"  # scope key: the consent page's (secure, client), computed once
_MAX_FORM_BYTES = 16 * 1024
_MAX_STATE_LENGTH = 512
_VERIFIER_BYTES = 32  # 64 hex characters: NetSuite rule N19 (docs/netsuite-behaviour.md)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # No script, no frames (a consent page must not be clickjacked), no Referer to the callback.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _template(name: str) -> Template:
    """A page of `templates/`, read once at import; its file's final newline is not part of it,
    so that the pages come out byte for byte as they did when written inline."""
    text = (resources.files("tba_guard.asgi") / "templates" / name).read_text(encoding="utf-8")
    return Template(text.removesuffix("\n"))


_PAGE = _template("page.html")  # the document around every page: title, style, heading
_SIGN_IN = _template("sign_in.html")
_WRONG_PASSWORD = _template("wrong_password.html")
_CONSENT = _template("consent.html")
_ERROR = _template("error.html")
# Repeated or optional parts of the forms, too small for files of their own.
_HIDDEN = Template('<input type="hidden" name="$name" value="$value">')
_OPTION = Template('<option value="$role"$selected>$role</option>')
_ACCOUNT = Template(" of account <strong>$realm</strong>")


def _render(template: Template, markup: Mapping[str, str] | None = None, /, **text: str) -> str:
    """`text` values are escaped; `markup` holds parts already rendered by this module."""
    escaped = {name: html.escape(value, quote=True) for name, value in text.items()}
    return template.substitute(escaped, **(markup or {}))


class PageError(Exception):
    """A consent-page failure: shown to the person as a page, never a redirect."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


class ConsentPages:
    """The consent page, as an ASGI app for `authorize_path`. Without `current_user` it signs
    in the `users` of the settings with a form of its own, found through `user_lookup`."""

    def __init__(
        self,
        settings: GuardSettings,
        tokens: TokenStore,
        credentials: CredentialStore,
        reader: RequestReader,
        guard: Guard,
        *,
        current_user: CurrentUser | None,
        user_lookup: UserLookup | None,
        sign_in_url: str | None,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.credentials = credentials
        # Reads the page's scheme and client as the guard does, and audits with its hooks.
        self.reader = reader
        self.guard = guard
        self.builtin_sign_in = current_user is None
        self.current_user: CurrentUser = current_user or self.session_user
        self.user_lookup = user_lookup
        self.sign_in_url = sign_in_url
        self.clock = clock
        # Signs the session and CSRF cookies. Random per process unless configured: set
        # `session_secret` when several processes serve the consent page.
        self._key = (settings.session_secret or secrets.token_hex(32)).encode()
        self._users_by_name = {user.name: user for user in settings.users}
        window = settings.sign_in_failure_window
        self.name_failures = SignInThrottle(settings.sign_in_max_failures, window, clock)
        self.address_failures = SignInThrottle(
            settings.sign_in_max_failures_per_address, window, clock
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        try:
            self.page_context(request)
            if request.method == "GET":
                return await self.consent_page(request)
            if request.method == "POST":
                return await self.consent_decision(request)
            return PlainTextResponse("Use GET or POST.", 405, headers={"Allow": "GET, POST"})
        except PageError as error:
            return _page(error.title, error.detail, status=error.status)
        except (TokenStoreError, TBAError):
            title = "Try again in a moment"
            detail = "The sign-in service cannot reach its token store."
            return _page(title, detail, status=503, headers={"Retry-After": "1"})

    def page_context(self, request: Request) -> tuple[bool, str]:
        """Whether the page is served over HTTPS, and the client's address, as the guard
        reads them (`public_url`, `trusted_proxies`); computed once per request."""
        context: tuple[bool, str] | None = request.scope.get(_PAGE_CONTEXT)
        if context is None:
            try:
                view = self.reader.request_from_scope(request.scope)
            except TBAError as error:
                raise PageError(
                    400, "Bad request", "The request cannot be read one way."
                ) from error
            context = request.scope[_PAGE_CONTEXT] = (view.secure, view.client)
        return context

    def cookie_name(self, request: Request, name: str) -> str:
        """`__Host-` and `Secure` over HTTPS; the bare name over plain HTTP (development),
        where a browser would refuse a `__Host-` cookie."""
        return HOST_PREFIX + name if self.page_context(request)[0] else name

    # --- the page and the decision -------------------------------------------------------------

    async def consent_page(self, request: Request) -> Response:
        token_id = _single(request.query_params.multi_items(), "oauth_token")
        state = _checked_state(_single(request.query_params.multi_items(), "state"))
        token = await self.pending_token(token_id)
        integration_name = await self.integration_name(token)
        sent = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
        csrf_cookie = sent if self.csrf_cookie_valid(sent) else self.new_csrf_cookie()
        if sent and sent != csrf_cookie:
            reason = "CSRF cookie not issued here: replaced"
            self.audit_page(request, reason, token=token, outcome="rejected")
        csrf = self.csrf_field(csrf_cookie, token_id)
        user = await self.current_user(request)
        if user is None:
            if self.builtin_sign_in:
                response = self.sign_in_form(token, state, csrf, integration_name)
            elif self.sign_in_url:
                return RedirectResponse(
                    f"{self.sign_in_url}?{urlencode({'next': str(request.url)})}", 303
                )
            else:
                raise PageError(401, "Sign in first", "Sign in to the application, then retry.")
        elif not user.active or not user.roles:
            raise PageError(403, "No usable role", "Your account has no role that may do this.")
        else:
            response = self.consent_form(token, state, csrf, integration_name, user)
        if sent != csrf_cookie:
            self.set_cookie(request, response, CSRF_COOKIE, csrf_cookie, None)
        return response

    async def consent_decision(self, request: Request) -> Response:
        form = await _read_form(request)
        token_id = form.get("oauth_token", "")
        state = _checked_state(form.get("state", ""))
        cookie = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
        if not self.csrf_cookie_valid(cookie):
            reason = "consent form without a CSRF cookie issued here"
            self.audit_page(request, reason, token_id=token_id, outcome="rejected")
            raise PageError(403, "Expired form", "Reload the page and try again.")
        if not hmac.compare_digest(self.csrf_field(cookie, token_id), form.get("csrf", "")):
            self.audit_page(
                request,
                "consent form without a valid CSRF value",
                token_id=token_id,
                outcome="rejected",
            )
            raise PageError(403, "Expired form", "Reload the page and try again.")
        if form.get("action") == "sign_in" and self.builtin_sign_in:
            return await self.sign_in(request, form, token_id, state)
        token = await self.pending_token(token_id)
        user = await self.current_user(request)
        if user is None or not user.active:
            raise PageError(401, "Sign in first", "Your session ended. Sign in and retry.")
        decision = form.get("decision")
        # A failing token store raises TokenStoreError, which `respond` answers with a 503 page.
        if decision == "allow":
            role = form.get("role", "")
            if not user.may_use(role):
                raise PageError(400, "Choose a role", "Choose one of your roles.")
            verifier = secrets.token_hex(_VERIFIER_BYTES)
            done = await self.tokens.decide(
                token_id, "allowed", verifier=verifier, entity=user.entity, role=role
            )
            answer = [("oauth_verifier", verifier), ("company", token.realm)]
            answer += [("role", role), ("entity", user.entity)]
        elif decision == "deny":
            done = await self.tokens.decide(
                token_id, "denied", verifier="", entity=user.entity, role=""
            )
            answer = [("oauth_verifier", ""), ("company", token.realm)]
        else:
            raise PageError(400, "Choose Allow or Deny", "The form was not sent as shown.")
        if not done:
            raise PageError(400, "Already decided", "This request was already answered.")
        self.audit_page(request, f"consent {decision} by entity {user.entity}", token=token)
        answer = [("oauth_token", token_id), *answer]
        if state:
            answer.append(("state", state))
        return RedirectResponse(_with_query(token.callback, answer), 303, headers=_PAGE_HEADERS)

    async def pending_token(self, token_id: str) -> RequestToken:
        """The request token a consent page is about: known, unexpired, undecided."""
        if not token_id:
            raise PageError(400, "No request", "The link carries no oauth_token.")
        token = await self.tokens.request_token(token_id)
        if token is None:
            raise PageError(400, "Unknown request", "Start again from the application.")
        if self.clock() >= token.expires_at:
            raise PageError(400, "Expired request", "This request expired. Start again.")
        if token.decision != "pending" or token.uses:
            raise PageError(400, "Already decided", "This request was already answered.")
        return token

    async def integration_name(self, token: RequestToken) -> str:
        integration = await self.credentials.integration(token.consumer_key)
        if integration is None or integration.state != "enabled":
            raise PageError(400, "Unavailable", "This application can no longer be authorized.")
        return integration.name or integration.consumer_key[:12]

    def audit_page(
        self,
        request: Request,
        reason: str,
        *,
        token: RequestToken | None = None,
        token_id: str = "",
        outcome: Literal["accepted", "rejected"] = "accepted",
    ) -> None:
        """A consent-page event on the audit log: a decision, a sign-in, a refused form. There
        is no catalog code for these; the reason says what happened (never a name typed in the
        sign-in form: people type passwords there by mistake)."""
        record(
            AuditEvent(
                outcome=outcome,
                code="",
                consumer_key=token.consumer_key if token else "",
                token_id=token.token_id if token else token_id,
                realm=token.realm if token else "",
                method=request.method,
                path=request.url.path,
                client=self.page_context(request)[1],
                time=self.clock(),
                reason=reason,
            ),
            self.guard.audit_hooks,
        )

    # --- built-in sign-in for `users` of the settings ------------------------------------------

    async def session_user(self, request: Request) -> User | None:
        """The user of a valid session cookie (the built-in sign-in)."""
        value = request.cookies.get(self.cookie_name(request, SESSION_COOKIE), "")
        encoded, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not (encoded and expires.isdigit() and mac):
            return None
        if not hmac.compare_digest(self.mac("session", encoded, expires), mac):
            return None
        if int(expires) <= self.clock() or self.user_lookup is None:
            return None
        try:
            entity = base64.urlsafe_b64decode(encoded.encode()).decode()
        except ValueError:
            return None
        user = await self.user_lookup(entity)
        return user if user is not None and user.active else None

    async def sign_in(
        self, request: Request, form: dict[str, str], token_id: str, state: str
    ) -> Response:
        token = await self.pending_token(token_id)
        name = form.get("name", "")
        client = self.page_context(request)[1]
        # Throttled before the password is looked at: once refused, even the right one waits.
        wait = max(self.name_failures.wait(name), self.address_failures.wait(client))
        if wait > 0:
            self.audit_page(request, "sign-in throttled", token=token, outcome="rejected")
            minutes = max(1, math.ceil(wait / 60))
            detail = f"Too many failed sign-ins. Try again in {minutes} minute(s)."
            retry = {"Retry-After": str(math.ceil(wait))}
            return _page("Too many attempts", detail, status=429, headers=retry)
        user = self._users_by_name.get(name)
        password = form.get("password", "").encode()
        expected = user.password.encode() if user else secrets.token_bytes(16)
        # Compare even for an unknown name, so timing does not tell which names exist.
        if not (hmac.compare_digest(expected, password) and user and user.password and user.active):
            self.name_failures.fail(name)
            self.address_failures.fail(client)
            self.audit_page(request, "sign-in failed", token=token, outcome="rejected")
            integration_name = await self.integration_name(token)
            cookie = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
            csrf = self.csrf_field(cookie, token_id)
            response = self.sign_in_form(
                token, state, csrf, integration_name, failed=True, status=401
            )
            return response
        self.name_failures.clear(name)
        self.audit_page(request, f"signed in as entity {user.entity}", token=token)
        query = [("oauth_token", token_id)] + ([("state", state)] if state else [])
        response = RedirectResponse(
            f"{request.url.path}?{urlencode(query)}", 303, headers=_PAGE_HEADERS
        )
        expires = str(int(self.clock()) + SESSION_SECONDS)
        encoded = base64.urlsafe_b64encode(user.entity.encode()).decode()
        value = f"{encoded}.{expires}.{self.mac('session', encoded, expires)}"
        self.set_cookie(request, response, SESSION_COOKIE, value, SESSION_SECONDS)
        return response

    # --- cookies and forms ---------------------------------------------------------------------

    def mac(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def new_csrf_cookie(self) -> str:
        """A CSRF cookie this server issued: a random value and its MAC, so a value chosen by
        the client (or planted by another site) is recognised and refused."""
        value = secrets.token_hex(16)
        return f"{value}.{self.mac('csrf-cookie', value)}"

    def csrf_cookie_valid(self, cookie: str) -> bool:
        value, _, mac = cookie.partition(".")
        return bool(value and mac) and hmac.compare_digest(self.mac("csrf-cookie", value), mac)

    def csrf_field(self, cookie: str, token_id: str) -> str:
        """The form's CSRF value: bound to the browser's cookie and to this request token."""
        return self.mac("csrf", cookie, token_id)

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int | None
    ) -> None:
        secure = self.page_context(request)[0]
        response.set_cookie(
            self.cookie_name(request, name),
            value,
            max_age=max_age,
            path="/",  # and no Domain: what `__Host-` requires
            secure=secure,
            httponly=True,
            samesite="lax",
        )

    def hidden_fields(self, token: RequestToken, state: str, csrf: str) -> str:
        fields = [("oauth_token", token.token_id), ("csrf", csrf)]
        fields += [("state", state)] if state else []
        return "".join(_render(_HIDDEN, name=name, value=value) for name, value in fields)

    def sign_in_form(
        self,
        token: RequestToken,
        state: str,
        csrf: str,
        integration_name: str,
        *,
        failed: bool = False,
        status: int = 200,
    ) -> Response:
        markup = {
            "notice": _render(_WRONG_PASSWORD) if failed else "",
            "hidden": self.hidden_fields(token, state, csrf),
        }
        body = _render(
            _SIGN_IN, markup, integration=integration_name, action=self.settings.authorize_path
        )
        return _html("Sign in", body, status=status)

    def consent_form(
        self, token: RequestToken, state: str, csrf: str, integration_name: str, user: User
    ) -> Response:
        options = "".join(
            _render(
                _OPTION,
                {"selected": " selected" if role == token.requested_role else ""},
                role=role,
            )
            for role in user.roles
        )
        markup = {
            "account": _render(_ACCOUNT, realm=token.realm) if token.realm else "",
            "hidden": self.hidden_fields(token, state, csrf),
            "options": options,
        }
        body = _render(
            _CONSENT,
            markup,
            integration=integration_name,
            user=user.name,
            action=self.settings.authorize_path,
        )
        return _html(f"Authorize {integration_name}", body)


class SignInThrottle:
    """Failed sign-ins per key (a name, or a client address) in a sliding window: after
    `limit` failures within `window` seconds the key waits until the oldest of them ages out.
    In-process and bounded: past `_THROTTLE_MAX_KEYS` keys the longest quiet are forgotten."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        failures = self._failures.get(key)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self.clock())

    def fail(self, key: str) -> None:
        failures = self._failures.pop(key, None)  # re-inserted last: the most recent
        if failures is None:
            if len(self._failures) >= _THROTTLE_MAX_KEYS:
                del self._failures[next(iter(self._failures))]
            failures = deque(maxlen=self.limit)
        failures.append(self.clock())
        self._failures[key] = failures

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


# --- pages and forms -------------------------------------------------------------------------


def _html(
    title: str, body: str, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """`body` (rendered markup) in the document of every page."""
    document = _render(_PAGE, {"body": body}, title=title)
    return HTMLResponse(document, status, headers={**_PAGE_HEADERS, **(headers or {})})


def _page(
    title: str, detail: str, *, status: int, headers: dict[str, str] | None = None
) -> Response:
    """A page that only says something: an error, or why to wait."""
    return _html(title, _render(_ERROR, detail=detail), status=status, headers=headers)


def _single(items: Iterable[tuple[str, str]], name: str) -> str:
    values = [value for key, value in items if key == name]
    if len(values) > 1:
        raise PageError(400, "Bad link", f"{name} is given twice.")
    return values[0] if values else ""


def _checked_state(state: str) -> str:
    """`state` as NetSuite rule N24 allows it (docs/netsuite-behaviour.md)."""
    if state and not (len(state) <= _MAX_STATE_LENGTH and state.isascii() and state.isalnum()):
        raise PageError(400, "Bad link", "state must be letters and digits, 512 at most.")
    return state


async def _read_form(request: Request) -> dict[str, str]:
    """The consent form's fields; small, form-encoded and each name once."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise PageError(400, "Bad form", "The form was not sent as a form.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            raise PageError(413, "Bad form", "The form is too large.")
        chunks.append(chunk)
    try:
        pairs = parse_qsl(b"".join(chunks).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PageError(400, "Bad form", "The form is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise PageError(400, "Bad form", f"{name} is given twice.")
        form[name] = value
    return form


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    """The callback with our parameters added after any query of its own."""
    query = urlencode(params, quote_via=quote)
    if "?" not in url:
        return f"{url}?{query}"
    return f"{url}{'' if url.endswith(('?', '&')) else '&'}{query}"
