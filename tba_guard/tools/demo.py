"""The demo service of `tba-guard serve`: NetSuite-shaped endpoints behind the guard.

Every guarded endpoint answers with the identity the middleware verified and with what it
received, so a newcomer sees at once what got through and what the application was handed.
`/healthz` is never guarded, so that a process manager (or a test) can wait for the service.

`create_app` is the factory uvicorn imports in each worker when there are several; it reads the
settings as the CLI does (`PRECEDENCE`): `TBA_GUARD_CONFIG`, `TBA_GUARD_*`, or the demo's.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from ..asgi.flow import TBAFlow
from ..core.records import Identity
from ..core.settings import GuardSettings, SettingsError, env_has_settings

CONFIG_ENV = "TBA_GUARD_CONFIG"
#: How the CLI names the embedded settings: their secrets ship with the package.
DEMO_SOURCE = "the embedded demo settings (published secrets: demo only)"
#: The CLI's order, also shown by `tba-guard --help`.
PRECEDENCE = (
    "Settings come from --config FILE if given, else the file named by $TBA_GUARD_CONFIG, "
    "else the TBA_GUARD_* environment variables if any is set, else the embedded demo settings."
)
HEALTH_PATH = "/healthz"
#: Where the demo flow integration's callback lands: a page showing what it received.
CALLBACK_PATH = "/tba/callback"
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
            embedded = resources.files("tba_guard.tools") / "demo.toml"
            with resources.as_file(embedded) as file:
                return GuardSettings.from_toml(file)
        return GuardSettings.from_toml(path)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the file: {exc.strerror or exc}") from None


def resolve_settings(
    config: str | None, environ: Mapping[str, str] | None = None
) -> tuple[GuardSettings, str | None, str]:
    """Settings by `PRECEDENCE`, the file they came from (None: none) and a name for them,
    so a user configured through the environment gets the same guard from the CLI as from
    the library."""
    environ = os.environ if environ is None else environ
    path = config if config is not None else environ.get(CONFIG_ENV) or None
    if path is not None:
        where = path if config is not None else f"{path} (${CONFIG_ENV})"
        return load_settings(path), path, where
    if env_has_settings(environ):
        return GuardSettings.from_env(environ), None, "the TBA_GUARD_* environment variables"
    return load_settings(None), None, DEMO_SOURCE


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


async def callback(request: Request) -> HTMLResponse:
    """The demo client's callback (authorization flow, step two's redirect): shows what it
    received, which a real client would exchange at step three."""
    rows = "".join(
        f'<tr><th>{html.escape(name)}</th><td><code id="{html.escape(name)}">'
        f"{html.escape(value)}</code></td></tr>"
        for name, value in request.query_params.multi_items()
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Callback received</title></head><body><h1>Callback received</h1>"
        f"<table>{rows}</table><p>A client now exchanges <code>oauth_token</code> and "
        "<code>oauth_verifier</code> at <code>POST /rest/accesstoken</code>, signed with its "
        "consumer secret and the request-token secret.</p></body></html>"
    )
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(page, headers=headers)


def build_app(settings: GuardSettings) -> ASGIApp:
    """The demo application behind the guard, with the authorization flow's three endpoints;
    `/healthz` and the demo callback page are exempt whatever the settings say."""
    unguarded = [path for path in (HEALTH_PATH, CALLBACK_PATH) if path not in settings.exempt_paths]
    if unguarded:
        settings = settings.replace(exempt_paths=(*settings.exempt_paths, *unguarded))
    app = Starlette(
        routes=[
            Route(RESTLET_PATH, echo, methods=RESTLET_METHODS),
            Route(REST_PATH, echo, methods=REST_METHODS),
            Route(HEALTH_PATH, health, methods=["GET"]),
            Route(CALLBACK_PATH, callback, methods=["GET"]),
        ]
    )
    # The guard in front of the app, and the authorization flow's three endpoints beside it.
    return TBAFlow(app, settings)


def create_app() -> ASGIApp:
    """uvicorn factory (`tba_guard.tools.demo:create_app`): settings by `PRECEDENCE` without a
    --config. Under several workers it refuses to start unless the stores are shared."""
    return build_app(resolve_settings(None)[0])
