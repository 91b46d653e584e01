"""The demo service of `tba-guard serve`: NetSuite-shaped endpoints behind the guard (NetSuite
rules N27 and N29, docs/netsuite-behaviour.md).

Every guarded endpoint answers with the identity the middleware verified and with what it
received, so a newcomer sees at once what got through and what the application was handed.
`/healthz` is never guarded, so that a process manager (or a test) can wait for the service.

`create_app` is the factory uvicorn imports in each worker when there are several; it reads the
settings as the CLI does (`PRECEDENCE`): `TBA_GUARD_CONFIG`, `TBA_GUARD_*`, or the demo's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import os
from collections.abc import Mapping
from email.utils import formatdate
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..asgi.flow import TBAFlow
from ..core.records import Identity
from ..core.settings import CONFIG_ENV as CONFIG_ENV
from ..core.settings import (
    GuardSettings,
    LayeredSettings,
    env_has_settings,
    load_layers,
)

#: How the CLI names the embedded settings: their secrets ship with the package.
DEMO_SOURCE = "the embedded demo settings (published secrets: demo only)"
#: The CLI's order, also shown by `tba-guard --help`.
PRECEDENCE = (
    "Settings are layered: the file of --config FILE (else $TBA_GUARD_CONFIG), then every "
    "TBA_GUARD_* variable over it; with neither, the embedded demo settings."
)
HEALTH_PATH = "/healthz"
#: Where the demo flow integration's callback lands: a page showing what it received.
CALLBACK_PATH = "/tba/callback"
RESTLET_PATH = "/app/site/hosting/restlet.nl"
REST_PATH = "/services/rest/{path:path}"
# The methods of NetSuite rule N27 (docs/netsuite-behaviour.md).
RESTLET_METHODS = ["GET", "POST", "PUT", "DELETE"]
REST_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
MAX_DELAY = 10.0  # seconds `?delay=` may hold a request


def load_settings(path: str | os.PathLike[str] | None) -> GuardSettings:
    """Settings from one TOML file alone, or the embedded demo settings when no path is given."""
    if path is None:
        embedded = resources.files("tba_guard.tools") / "demo.toml"
        with resources.as_file(embedded) as file:
            return GuardSettings.from_toml(file)
    return GuardSettings.from_toml(path)


def resolve_layers(config: str | None, environ: Mapping[str, str] | None = None) -> LayeredSettings:
    """The settings by `PRECEDENCE`, with each setting's source. Without a file or a setting in
    the environment, the embedded demo settings, so that `tba-guard serve` runs at once."""
    environ = os.environ if environ is None else environ
    if config is None and not environ.get(CONFIG_ENV) and not env_has_settings(environ):
        demo = load_settings(None)
        names = [field.name for field in dataclasses.fields(GuardSettings)]
        return LayeredSettings(demo, dict.fromkeys(names, DEMO_SOURCE), None)
    return load_layers(config, environ=environ)


def resolve_settings(
    config: str | None, environ: Mapping[str, str] | None = None
) -> tuple[GuardSettings, str | None, str]:
    """Settings by `PRECEDENCE`, the file they came from (None: none) and a name for them,
    so a user configured through the environment gets the same guard from the CLI as from
    the library."""
    environ = os.environ if environ is None else environ
    layered = resolve_layers(config, environ)
    path = layered.config
    if path is None:
        where = "the TBA_GUARD_* variables" if env_has_settings(environ) else DEMO_SOURCE
        return layered.settings, None, where
    where = path if config is not None else f"{path} (${CONFIG_ENV})"
    if env_has_settings(environ):
        where += " with the TBA_GUARD_* variables over it"
    return layered.settings, path, where


async def echo(request: Request) -> JSONResponse:
    """Name the verified identity and describe what arrived (the body by size only). `?delay=S`
    answers S seconds later (at most `MAX_DELAY`), as a slow script would: requests in flight
    for concurrency governance to count."""
    identity: Identity = request.scope["tba"]
    body = await request.body()
    delay = request.query_params.get("delay")
    if delay is not None:
        try:
            seconds = float(delay)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_DELAY:  # NaN too
            message = f"delay: seconds from 0 to {MAX_DELAY:g}"
            return JSONResponse({"error": {"code": "INVALID_PARAMETER", "message": message}}, 400)
        await asyncio.sleep(seconds)
    return JSONResponse(
        {
            "consumer_key": identity.consumer_key,
            "token_id": identity.token_id,
            "realm": identity.realm,
            "entity": identity.entity,
            "role": identity.role,
            "scheme": identity.scheme,
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


class DateHeader:
    """One `Date` on every response. The guard dates its rejections with its own clock (the one
    it checks timestamps against), so uvicorn runs with its `Date` off, or there would be two;
    this dates the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"date" for name, _ in headers):
                    headers.append((b"date", formatdate(usegmt=True).encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


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
    return DateHeader(TBAFlow(app, settings))


def create_app() -> ASGIApp:
    """uvicorn factory (`tba_guard.tools.demo:create_app`): settings by `PRECEDENCE` without a
    --config. Under several workers it refuses to start unless the stores are shared."""
    return build_app(resolve_settings(None)[0])
