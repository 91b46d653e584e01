"""The guard under each ASGI server the benchmarks measure, as real processes: uvicorn with h11,
uvicorn with httptools, and granian, whose `receive()` hands back an awaitable of its own. A
signed GET, a signed form and a JSON body under `oauth_body_hash` reach the application with
their bodies intact; a body changed after signing never does."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support import CONSUMER_KEY, CONSUMER_SECRET, REALM, TOKEN_ID, TOKEN_SECRET
from tests.support.servers import free_port, running_server
from tests.support.signing import oauth_header

APP = f"""
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tba_guard import GuardSettings, Integration, TBAGuardMiddleware, Token


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({{"body": body.decode(), "token": request.user.identity}})


settings = GuardSettings(
    realm={REALM!r},
    integrations=(Integration({CONSUMER_KEY!r}, {CONSUMER_SECRET!r}),),
    tokens=(Token({TOKEN_ID!r}, {TOKEN_SECRET!r}, {CONSUMER_KEY!r}),),
    exempt_paths=("/healthz",),
)
app = TBAGuardMiddleware(
    Starlette(routes=[Route("/healthz", healthz), Route("/echo", echo, methods=["GET", "POST"])]),
    settings,
)
"""

SERVERS = {
    "uvicorn-h11": ["-m", "uvicorn", "guarded:app", "--http", "h11", "--no-access-log"],
    "uvicorn-httptools": ["-m", "uvicorn", "guarded:app", "--http", "httptools", "--no-access-log"],
    "granian": ["-m", "granian", "--interface", "asgi", "--workers", "1", "guarded:app"],
}


def signed(method: str, url: str, body: str = "", *, form: bool = False) -> str:
    extra = {}
    if body and not form:
        digest = hashlib.sha256(body.encode()).digest()
        extra["oauth_body_hash"] = base64.b64encode(digest).decode()
    return oauth_header(method, url, body=body, form=form, extra=extra, timestamp=int(time.time()))


@pytest.mark.parametrize("server", list(SERVERS))
def test_signed_requests_and_their_bodies_pass_each_server_and_changed_bodies_do_not(
    tmp_path: Path, server: str
) -> None:
    (tmp_path / "guarded.py").write_text(APP)
    port = free_port()
    command = [sys.executable, *SERVERS[server], "--host", "127.0.0.1", "--port", str(port)]
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    with running_server(command, tmp_path / "server.log", port=port, env={"PYTHONPATH": path}):
        url = f"http://127.0.0.1:{port}/echo"
        form_body = "a=1&b=x%20y"
        json_body = json.dumps({"companyName": "Acme"})
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        json_type = {"Content-Type": "application/json"}
        with httpx.Client(timeout=10) as client:
            get = client.get(url, headers={"Authorization": signed("GET", url)})
            posted_form = client.post(
                url,
                content=form_body,
                headers={"Authorization": signed("POST", url, form_body, form=True)} | form_type,
            )
            posted_json = client.post(
                url,
                content=json_body,
                headers={"Authorization": signed("POST", url, json_body)} | json_type,
            )
            changed_form = client.post(
                url,
                content="a=2&b=x%20y",
                headers={"Authorization": signed("POST", url, form_body, form=True)} | form_type,
            )
            changed_json = client.post(
                url,
                content=json.dumps({"companyName": "Evil"}),
                headers={"Authorization": signed("POST", url, json_body)} | json_type,
            )
    assert (get.status_code, get.json()) == (200, {"body": "", "token": TOKEN_ID})
    assert (posted_form.status_code, posted_form.json()["body"]) == (200, form_body)
    assert (posted_json.status_code, posted_json.json()["body"]) == (200, json_body)
    assert changed_form.status_code == 401
    assert changed_form.json()["error"]["code"] == "InvalidSignature"
    assert changed_json.status_code == 401
    assert changed_json.json()["error"]["code"] == "InvalidSignature"
