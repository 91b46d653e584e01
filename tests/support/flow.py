"""The three-step authorization flow driven as a client application and a browser would:
in process (`FlowClient`) or against a flow server in its own process (`FlowServer`).

Requests are signed with oauthlib (`oauth_header`, or requests-oauthlib itself), never with
tba_guard's own signing code.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import requests
from requests_oauthlib import OAuth1Session

from tba_guard import GuardSettings, Integration
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.records import User
from tests.support.servers import free_port, running_server
from tests.support.signing import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    REALM,
    make_settings,
    oauth_header,
)

FLOW_KEY = "ck-flow"
FLOW_SECRET = "cs-flow-s3cr3t-consumer"
OTHER_KEY = "ck-flow-other"
OTHER_SECRET = "cs-flow-other-s3cr3t"
CALLBACK = "https://app.example.com/tba/callback"
REQUEST_TOKEN_PATH = "/rest/requesttoken"
AUTHORIZE_PATH = "/app/login/secure/authorizetoken.nl"
ACCESS_TOKEN_PATH = "/rest/accesstoken"
ALICE = User("38", "alice", "alice-pw-s3cr3t", ("3", "1000"))
BOB = User("41", "bob", "bob-pw-s3cr3t", ("1032",), active=False)
HEX64 = re.compile(r"[0-9a-f]{64}")


def flow_integrations(callback: str = CALLBACK) -> list[Integration]:
    return [
        Integration(
            FLOW_KEY,
            FLOW_SECRET,
            name='Order sync <b>"beta"</b>',
            authorization_flow=True,
            callback_url=callback,
        ),
        Integration(OTHER_KEY, OTHER_SECRET, authorization_flow=True, callback_url=callback),
        Integration(CONSUMER_KEY, CONSUMER_SECRET, name="No flow box"),
        Integration(
            "ck-flow-blocked",
            "cs-flow-blocked-secret",
            state="blocked",
            authorization_flow=True,
            callback_url=callback,
        ),
        Integration(
            "ck-wild",
            "cs-wild-callback-secret",
            authorization_flow=True,
            callback_url="https://*.example.org/cb",
        ),
    ]


def flow_settings(**overrides: Any) -> GuardSettings:
    values: dict[str, Any] = {"integrations": flow_integrations(), "users": [ALICE, BOB]}
    values.update(overrides)
    return make_settings(**values)


def assert_error(
    response: httpx.Response | requests.Response,
    code: str,
    status: int,
    problem: str | None = None,
) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    challenge = response.headers["www-authenticate"]
    assert f'error="{code}"' in challenge
    if problem is not None:
        assert f'oauth_problem="{problem}"' in challenge


def form(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    return dict(httpx.QueryParams(response.text))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query, True).items()}


class FlowClient:
    """Drives the flow in process, as a client application and a browser would."""

    def __init__(self, client: httpx.AsyncClient, base: str = BASE_URL) -> None:
        self.http = client
        self.base = base

    async def request_token(
        self,
        *,
        consumer_key: str = FLOW_KEY,
        consumer_secret: str = FLOW_SECRET,
        callback: str | None = CALLBACK,
        extra: dict[str, str] | None = None,
        token_secret: str = "",
        **header: Any,
    ) -> httpx.Response:
        params = {"oauth_callback": callback} if callback is not None else {}
        authorization = oauth_header(
            "POST",
            self.base + REQUEST_TOKEN_PATH,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            token=None,
            token_secret=token_secret,
            extra={**params, **(extra or {})},
            **header,
        )
        return await self.http.post(REQUEST_TOKEN_PATH, headers={"Authorization": authorization})

    async def new_request_token(self, **kwargs: Any) -> tuple[str, str]:
        answer = form(await self.request_token(**kwargs))
        return answer["oauth_token"], answer["oauth_token_secret"]

    async def sign_in(self, token_id: str, user: User = ALICE) -> httpx.Response:
        page = await self.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        assert page.status_code == 200, page.text
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "action": "sign_in"}
        data |= {"name": user.name, "password": user.password}
        return await self.http.post(AUTHORIZE_PATH, data=data)

    async def decide(
        self, token_id: str, decision: str = "allow", role: str = "3", state: str | None = None
    ) -> httpx.Response:
        """Sign in, open the consent page, press Allow or Deny; the 303 to the callback."""
        signed_in = await self.sign_in(token_id)
        assert signed_in.status_code == 303, signed_in.text
        params = {"oauth_token": token_id} | ({"state": state} if state else {})
        page = await self.http.get(AUTHORIZE_PATH, params=params)
        assert page.status_code == 200, page.text
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "decision": decision}
        data |= {"role": role} | ({"state": state} if state else {})
        return await self.http.post(AUTHORIZE_PATH, data=data)

    async def authorize(self, token_id: str, **kwargs: Any) -> dict[str, str]:
        response = await self.decide(token_id, **kwargs)
        assert response.status_code == 303, response.text
        return query_of(response.headers["location"])

    async def access_token(
        self,
        token_id: str,
        token_secret: str,
        verifier: str,
        *,
        consumer_key: str = FLOW_KEY,
        consumer_secret: str = FLOW_SECRET,
        **header: Any,
    ) -> httpx.Response:
        authorization = oauth_header(
            "POST",
            self.base + ACCESS_TOKEN_PATH,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            token=token_id,
            token_secret=token_secret,
            extra={"oauth_verifier": verifier},
            **header,
        )
        return await self.http.post(ACCESS_TOKEN_PATH, headers={"Authorization": authorization})

    async def through_consent(self) -> tuple[str, str, str]:
        token_id, secret = await self.new_request_token()
        verifier = (await self.authorize(token_id))["oauth_verifier"]
        return token_id, secret, verifier

    async def resource(self, token_id: str, token_secret: str) -> httpx.Response:
        url = self.base + "/app/site/hosting/restlet.nl?script=7&deploy=1"
        authorization = oauth_header(
            "GET",
            url,
            consumer_key=FLOW_KEY,
            consumer_secret=FLOW_SECRET,
            token=token_id,
            token_secret=token_secret,
        )
        return await self.http.get(url, headers={"Authorization": authorization})


async def client_for(
    flow: TBAFlow, base: str = BASE_URL, address: str = "127.0.0.1"
) -> AsyncIterator[FlowClient]:
    """A FlowClient on `flow` in process, its requests coming from `address`."""
    transport = httpx.ASGITransport(app=flow, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        yield FlowClient(client, base)


# --- end to end: a flow server in its own process --------------------------------------------

SERVER = """
import html, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from tba_guard import GuardSettings
from tba_guard.asgi.flow import TBAFlow

async def callback(request):
    items = "".join(
        f'<li><code>{html.escape(k)}</code> = <code id="{html.escape(k)}">{html.escape(v)}</code>'
        for k, v in request.query_params.multi_items()
    )
    return HTMLResponse(f"<h1>Callback received</h1><ul>{items}</ul>")

async def restlet(request):
    identity = request.scope["tba"]
    return JSONResponse({"token_id": identity.token_id, "entity": identity.entity,
                         "role": identity.role, "realm": identity.realm})

async def health(request):
    return JSONResponse({"status": "ok"})

app = Starlette(routes=[
    Route("/tba/callback", callback),
    Route("/app/site/hosting/restlet.nl", restlet, methods=["GET", "POST"]),
    Route("/healthz", health),
])
settings = GuardSettings.from_toml(sys.argv[1])
uvicorn.run(TBAFlow(app, settings), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def server_config(path: Path, callback: str, extra: str = "") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            [guard]
            realm = "{REALM}"
            exempt_paths = ["/healthz", "/tba/callback"]
            {extra}

            [[integrations]]
            name = "Order sync"
            consumer_key = "{FLOW_KEY}"
            consumer_secret = "{FLOW_SECRET}"
            authorization_flow = true
            callback_url = "{callback}"

            [[users]]
            entity = "{ALICE.entity}"
            name = "{ALICE.name}"
            password = "{ALICE.password}"
            roles = {list(ALICE.roles)!r}
            """
        ).replace("'", '"')
    )
    return path


class FlowServer:
    """A server process on a free loopback port: by default `TBAFlow` in front of a small app
    in uvicorn (`SERVER`), or any command given; its output goes to a file, and it is stopped
    on leaving."""

    def __init__(
        self, config: Path, port: int | None = None, command: list[str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = command or [sys.executable, "-c", SERVER, str(config), str(self.port)]
        self.log = config.with_suffix(f".{self.port}.log")
        self.stack = ExitStack()

    def __enter__(self) -> FlowServer:
        self.stack.enter_context(running_server(self.command, self.log, port=self.port))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def sign_in_and_allow(browser: requests.Session, authorization_url: str, role: str = "3") -> str:
    """What a person does with plain HTML forms; the Location of the redirect to the callback."""
    page = browser.get(authorization_url)
    assert page.status_code == 200, page.text
    base = authorization_url.split("?")[0]
    fields = query_of(authorization_url)
    data = {"oauth_token": fields["oauth_token"], "csrf": csrf_of(page.text), "action": "sign_in"}
    data |= {"name": ALICE.name, "password": ALICE.password}
    data |= {"state": fields["state"]} if "state" in fields else {}
    consent = browser.post(base, data=data)  # follows the 303 back to the consent page
    assert consent.status_code == 200, consent.text
    assert 'value="allow"' in consent.text
    data = {"oauth_token": fields["oauth_token"], "csrf": csrf_of(consent.text)}
    data |= {"decision": "allow", "role": role}
    data |= {"state": fields["state"]} if "state" in fields else {}
    decided = browser.post(base, data=data, allow_redirects=False)
    assert decided.status_code == 303, decided.text
    return str(decided.headers["location"])


def oauth_session(**kwargs: Any) -> OAuth1Session:
    return OAuth1Session(
        FLOW_KEY, client_secret=FLOW_SECRET, signature_method="HMAC-SHA256", **kwargs
    )
