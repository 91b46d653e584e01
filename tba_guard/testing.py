"""Signed requests in your own tests: an `httpx` auth, a headers function and a guarded app.

Signing goes through oauthlib's `Client`, an implementation independent of the guard's, so a
test that passes shows that a real client's signature verifies. Nothing here imports httpx
until `TBAAuth` is first used: tba_guard itself does not depend on it.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from .asgi.middleware import TBAGuardMiddleware
from .core.records import Integration, Token
from .core.request import FORM_CONTENT_TYPE
from .core.settings import GuardSettings
from .core.signature import PLAINTEXT

if TYPE_CHECKING:
    from .core.records import Identity

__all__ = [
    "SigningCredentials",
    "TBAAuth",  # noqa: F822 - built on first use by __getattr__
    "guarded_app",
    "random_credentials",
    "sign_headers",
]


@dataclass(frozen=True, slots=True)
class SigningCredentials:
    """What a client signs with: one integration's key and secret and, usually, a token."""

    consumer_key: str
    consumer_secret: str = field(repr=False)
    token_id: str | None = None
    token_secret: str | None = field(default=None, repr=False)
    realm: str | None = None
    signature_method: str = "HMAC-SHA256"


def random_credentials(
    *, realm: str | None = None, signature_method: str = "HMAC-SHA256"
) -> SigningCredentials:
    """Throw-away keys and secrets (32 random bytes each), well above the secret minimum."""
    return SigningCredentials(
        consumer_key=f"test-ck-{secrets.token_hex(8)}",
        consumer_secret=secrets.token_urlsafe(32),
        token_id=f"test-tk-{secrets.token_hex(8)}",
        token_secret=secrets.token_urlsafe(32),
        realm=realm,
        signature_method=signature_method,
    )


def sign_headers(
    credentials: SigningCredentials,
    method: str,
    url: str,
    body: str | bytes | None = None,
    content_type: str | None = None,
) -> dict[str, str]:
    """The headers to send: `Authorization`, and `Content-Type` when one is given.

    `url` is the full URL the server sees (`http://testserver/...` under Starlette's
    `TestClient`). Only a form-encoded body is signed, as OAuth 1.0 and the guard require.
    """
    from oauthlib.oauth1 import Client

    text = body.decode("utf-8") if isinstance(body, bytes) else body
    signed_headers: dict[str, str] = {}
    signed_body = None
    if content_type is not None and text:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type == FORM_CONTENT_TYPE:
            signed_headers["Content-Type"] = content_type
            signed_body = text
    client = Client(
        credentials.consumer_key,
        client_secret=credentials.consumer_secret,
        resource_owner_key=credentials.token_id,
        resource_owner_secret=credentials.token_secret,
        signature_method=credentials.signature_method,
        realm=credentials.realm,
    )
    _, headers, _ = client.sign(
        url, http_method=cast(Any, method.upper()), body=signed_body, headers=signed_headers
    )
    result = {"Authorization": str(headers["Authorization"])}
    if content_type is not None:
        result["Content-Type"] = content_type
    return result


async def _identity(request: Request) -> JSONResponse:
    identity: Identity = request.scope["tba"]
    return JSONResponse(
        {
            "consumer_key": identity.consumer_key,
            "token_id": identity.token_id,
            "entity": identity.entity,
            "role": identity.role,
        }
    )


def identity_app() -> Starlette:
    """The default app behind `guarded_app`: answers any path and method with the identity
    the guard verified, so a test sees at once who got through."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", _identity, methods=methods)])


def guarded_app(
    app: ASGIApp | None = None,
    settings: GuardSettings | None = None,
    *,
    entity: str = "1",
    role: str = "3",
) -> tuple[TBAGuardMiddleware, SigningCredentials]:
    """`app` (by default one that answers with the verified identity) behind the guard, with
    one fresh integration and token added to `settings`, and the credentials to sign with.

    Each call makes new secrets, so tests never share or publish one; the realm and signature
    method follow the settings, so a request signed with the credentials verifies.
    """
    settings = settings or GuardSettings()
    methods = [m for m in settings.signature_methods if m != PLAINTEXT]
    credentials = random_credentials(
        realm=settings.realm,
        signature_method=methods[0] if methods else settings.signature_methods[0],
    )
    assert credentials.token_id is not None
    assert credentials.token_secret is not None
    settings = settings.replace(
        integrations=(
            *settings.integrations,
            Integration(credentials.consumer_key, credentials.consumer_secret, name="test"),
        ),
        tokens=(
            *settings.tokens,
            Token(
                credentials.token_id,
                credentials.token_secret,
                credentials.consumer_key,
                entity=entity,
                role=role,
            ),
        ),
    )
    return TBAGuardMiddleware(app or identity_app(), settings), credentials


def _httpx() -> Any:
    """The httpx that Starlette's `TestClient` uses: `httpx2` where installed, else `httpx`."""
    try:
        import starlette.testclient
    except ImportError:  # neither is installed: say which to install
        raise ImportError("TBAAuth needs httpx2 (or httpx): pip install httpx2") from None
    module: ModuleType = starlette.testclient
    return module.httpx


def _auth_class() -> type[Any]:
    base: Any = _httpx().Auth

    class TBAAuth(base):  # type: ignore[misc]  # httpx is imported at run time
        """An `httpx` auth that signs each request with `credentials` (body included).

        Also callable, as httpx accepts any function of a request, so it works with either
        httpx package whichever one `TestClient` uses.
        """

        requires_request_body = True

        def __init__(self, credentials: SigningCredentials) -> None:
            self.credentials = credentials

        def __call__(self, request: Any) -> Any:
            headers = sign_headers(
                self.credentials,
                request.method,
                str(request.url),
                request.content,
                request.headers.get("content-type"),
            )
            request.headers["Authorization"] = headers["Authorization"]
            return request

        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            yield self(request)

    TBAAuth.__module__ = __name__
    TBAAuth.__qualname__ = "TBAAuth"
    return TBAAuth


def __getattr__(name: str) -> Any:
    """`TBAAuth` is built on first use, so importing this module does not import httpx."""
    if name == "TBAAuth":
        cls = _auth_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
