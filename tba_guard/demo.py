"""The demo service of `tba-guard serve`: NetSuite-shaped endpoints behind the guard.

Every guarded endpoint answers with the identity the middleware verified and with what it
received, so a newcomer sees at once what got through and what the application was handed.
`/healthz` is never guarded, so that a process manager (or a test) can wait for the service.

`create_app` is the factory uvicorn imports in each worker when there are several; it reads the
settings file named by `TBA_GUARD_CONFIG` (the embedded demo settings when unset).
"""

from __future__ import annotations

import os
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from .checks import Identity
from .middleware import TBAGuardMiddleware
from .settings import GuardSettings, SettingsError

CONFIG_ENV = "TBA_GUARD_CONFIG"
HEALTH_PATH = "/healthz"
RESTLET_PATH = "/app/site/hosting/restlet.nl"
REST_PATH = "/services/rest/{path:path}"
# NetSuite RESTlets take these four; the REST web services also PATCH.
RESTLET_METHODS = ["GET", "POST", "PUT", "DELETE"]
REST_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def load_settings(path: str | os.PathLike[str] | None) -> GuardSettings:
    """Settings from a TOML file, or the embedded demo settings when no path is given.

    An unreadable file becomes a `SettingsError` too, so callers handle one kind of error.
    """
    try:
        if path is None:
            embedded = resources.files("tba_guard") / "demo.toml"
            with resources.as_file(embedded) as file:
                return GuardSettings.from_toml(file)
        return GuardSettings.from_toml(path)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the file: {exc.strerror or exc}") from None


async def echo(request: Request) -> JSONResponse:
    """Name the verified identity and describe what arrived (the body by size only)."""
    identity: Identity = request.scope["tba"]
    body = await request.body()
    return JSONResponse(
        {
            "consumer_key": identity.consumer_key,
            "token_id": identity.token_id,
            "realm": identity.realm,
            "entity": identity.entity,
            "role": identity.role,
            "method": request.method,
            "path": request.scope["path"],
            "query": request.scope["query_string"].decode("latin-1"),
            "body_bytes": len(body),
        }
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def build_app(settings: GuardSettings) -> ASGIApp:
    """The demo application wrapped in the guard; `/healthz` is exempt whatever the settings say."""
    if HEALTH_PATH not in settings.exempt_paths:
        settings = settings.replace(exempt_paths=(*settings.exempt_paths, HEALTH_PATH))
    app = Starlette(
        routes=[
            Route(RESTLET_PATH, echo, methods=RESTLET_METHODS),
            Route(REST_PATH, echo, methods=REST_METHODS),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ]
    )
    return TBAGuardMiddleware(app, settings)


def create_app() -> ASGIApp:
    """uvicorn factory (`tba_guard.demo:create_app`): settings from `$TBA_GUARD_CONFIG`."""
    return build_app(load_settings(os.environ.get(CONFIG_ENV) or None))
