"""The whole authorization flow: audited without secrets, across two workers sharing Redis, the
NetSuite vectors through the endpoints, and end to end with requests-oauthlib against real
uvicorn processes.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2 as httpx
import pytest
import requests
from requests_oauthlib import OAuth1Session
from requests_oauthlib.oauth1_session import TokenRequestDenied

from tba_guard import Guard, GuardSettings, Integration
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.records import RequestToken, User
from tba_guard.stores.memory import MemoryTokenStore
from tba_guard.stores.redis_tokens import RedisTokenStore
from tests.support import (
    ACCESS_TOKEN_PATH,
    ALICE,
    AUTHORIZE_PATH,
    BASE_URL,
    FLOW_SECRET,
    HEX64,
    REALM,
    REQUEST_TOKEN_PATH,
    Clock,
    FlowClient,
    FlowServer,
    cli_command,
    client_for,
    csrf_of,
    echo_app,
    flow_settings,
    form,
    free_port,
    load_vectors,
    oauth_session,
    query_of,
    server_config,
    sign_in_and_allow,
)

# --- the whole flow in process ----------------------------------------------------------------


async def test_flow_decisions_are_audited_without_secrets(
    fc: FlowClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tba_guard.audit")
    token_id, secret, verifier = await fc.through_consent()
    answer = form(await fc.access_token(token_id, secret, verifier))
    events = [record.tba_audit for record in caplog.records if hasattr(record, "tba_audit")]
    paths = [REQUEST_TOKEN_PATH, AUTHORIZE_PATH, AUTHORIZE_PATH, ACCESS_TOKEN_PATH]
    assert [e["path"] for e in events] == paths
    assert all(e["outcome"] == "accepted" for e in events)
    assert events[1]["reason"] == f"signed in as entity {ALICE.entity}"
    assert events[2]["reason"] == f"consent allow by entity {ALICE.entity}"
    assert events[3]["token_id"] == token_id
    logged = caplog.text + repr(events)
    for value in (secret, verifier, answer["oauth_token_secret"], FLOW_SECRET, ALICE.password):
        assert value not in logged


async def test_two_workers_sharing_redis_see_each_others_tokens(
    redis_prefix: str, clock: Clock
) -> None:
    """Step one on one worker, consent on another, step three on the first, the protected
    request on the second: each step finds what another process stored."""
    settings = flow_settings(
        token_store="redis://127.0.0.1:6379/0",
        token_store_key_prefix=redis_prefix,
        session_secret="shared-session-secret-0123456789",
    )
    one = TBAFlow(echo_app(), guard=Guard(settings, clock=clock))
    two = TBAFlow(echo_app(), guard=Guard(settings, clock=clock))
    transport_one = httpx.ASGITransport(app=one)
    transport_two = httpx.ASGITransport(app=two)
    async with (
        httpx.AsyncClient(transport=transport_one, base_url=BASE_URL) as http_one,
        httpx.AsyncClient(transport=transport_two, base_url=BASE_URL) as http_two,
    ):
        fc_one, fc_two = FlowClient(http_one), FlowClient(http_two)
        token_id, secret = await fc_one.new_request_token()
        signed_in = await fc_one.sign_in(token_id)
        assert signed_in.status_code == 303
        http_two.cookies = http_one.cookies  # the browser's cookies, now sent to worker two
        page = await http_two.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "decision": "allow"}
        location = (await http_two.post(AUTHORIZE_PATH, data=data | {"role": "3"})).headers[
            "location"
        ]
        verifier = query_of(location)["oauth_verifier"]
        issued = form(await fc_one.access_token(token_id, secret, verifier))
        response = await fc_two.resource(issued["oauth_token"], issued["oauth_token_secret"])
        assert response.status_code == 200, response.text
    for flow in (one, two):
        assert isinstance(flow.tokens, RedisTokenStore)
        await flow.tokens.aclose()


async def test_netsuite_flow_vectors_verify_through_the_flow_endpoints() -> None:
    vectors = {v["name"]: v for v in load_vectors()}
    step_one, step_three = vectors["netsuite-flow-step1"], vectors["netsuite-flow-step3"]
    callback = "https://my.example.com/TBA/?callbackRequest"
    user = User("38", "netsuite-user", "pw-0123456789", ("45678",))
    settings = GuardSettings(
        realm="1234567",
        integrations=[
            Integration(
                step_one["consumer_key"],
                step_one["consumer_secret"],
                authorization_flow=True,
                callback_url=callback,
            )
        ],
        users=[user],
    )
    clock = Clock(step_one["now"])
    tokens = MemoryTokenStore(clock=clock)
    flow = TBAFlow(echo_app(), guard=Guard(settings, clock=clock), tokens=tokens)
    base = "https://1234567.restlets.api.netsuite.com"
    async for fc in client_for(flow, base):
        one = await fc.http.post(REQUEST_TOKEN_PATH, headers=step_one["headers"])
        answer = form(one)
        assert answer["role"] == "45678"
        assert answer["oauth_callback_confirmed"] == "true"
        stored = await tokens.request_token(answer["oauth_token"])
        assert stored is not None
        assert stored.callback == callback

        clock.now = step_three["now"]
        await tokens.put_request_token(
            RequestToken(
                token_id=step_three["token"],
                token_secret=step_three["token_secret"],
                consumer_key=step_three["consumer_key"],
                callback=callback,
                expires_at=step_three["now"] + 600,
                realm="1234567",
                decision="allowed",
                verifier=_header_value(step_three["headers"]["Authorization"], "oauth_verifier"),
                entity=user.entity,
                role="45678",
            )
        )
        three = await fc.http.post(ACCESS_TOKEN_PATH, headers=step_three["headers"])
        issued = form(three)
        assert (await tokens.access_token(issued["oauth_token"])) is not None


def _header_value(header: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', header)
    assert found
    return found.group(1)


# --- end to end: requests-oauthlib against real uvicorn processes -----------------------------


def test_whole_flow_with_requests_oauthlib_against_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/tba/callback"
    with FlowServer(server_config(tmp_path / "flow.toml", callback), port) as server:
        client = oauth_session(callback_uri=callback)
        fetched = client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[REALM])
        assert fetched["oauth_callback_confirmed"] == "true"
        authorization_url = client.authorization_url(server.base + AUTHORIZE_PATH, state="st4te")
        browser = requests.Session()
        location = sign_in_and_allow(browser, authorization_url, role="1000")
        landing = browser.get(location)
        assert landing.status_code == 200
        assert "Callback received" in landing.text
        received = client.parse_authorization_response(location)
        assert received["oauth_token"] == fetched["oauth_token"]
        assert query_of(location)["state"] == "st4te"
        issued = client.fetch_access_token(server.base + ACCESS_TOKEN_PATH)
        assert HEX64.fullmatch(issued["oauth_token"])

        api = oauth_session(
            resource_owner_key=issued["oauth_token"],
            resource_owner_secret=issued["oauth_token_secret"],
            realm=REALM,
        )
        response = api.get(server.base + "/app/site/hosting/restlet.nl?script=7&deploy=1")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "token_id": issued["oauth_token"],
            "entity": ALICE.entity,
            "role": "1000",
            "realm": REALM,
        }
        replay = oauth_session(  # the same request token and verifier, a second time
            resource_owner_key=fetched["oauth_token"],
            resource_owner_secret=fetched["oauth_token_secret"],
            verifier=received["oauth_verifier"],
            realm=REALM,
        )
        with pytest.raises(TokenRequestDenied, match="TokenRejected"):
            replay.fetch_access_token(server.base + ACCESS_TOKEN_PATH)


def test_tokens_cross_uvicorn_processes_through_redis(tmp_path: Path, redis_prefix: str) -> None:
    """Two server processes sharing a Redis token store: whichever one a step lands on, it
    finds what the other stored, and the issued token is accepted by both at once."""
    port_a, port_b = free_port(), free_port()
    callback = f"http://127.0.0.1:{port_a}/tba/callback"
    extra = (
        'token_store = "redis://127.0.0.1:6379/0"\n'
        f'token_store_key_prefix = "{redis_prefix}"\n'
        'session_secret = "shared-session-secret-0123456789"'
    )
    config = server_config(tmp_path / "flow.toml", callback, extra)
    with FlowServer(config, port_a) as a, FlowServer(config, port_b) as b:
        client = oauth_session(callback_uri=callback)
        client.fetch_request_token(a.base + REQUEST_TOKEN_PATH, realm=[REALM])
        location = sign_in_and_allow(
            requests.Session(), client.authorization_url(b.base + AUTHORIZE_PATH)
        )
        client.parse_authorization_response(location)
        issued = client.fetch_access_token(b.base + ACCESS_TOKEN_PATH)
        for server in (a, b):
            api = oauth_session(
                resource_owner_key=issued["oauth_token"],
                resource_owner_secret=issued["oauth_token_secret"],
                realm=REALM,
            )
            response = api.get(server.base + "/app/site/hosting/restlet.nl")
            assert response.status_code == 200, response.text
            assert response.json()["entity"] == ALICE.entity


def test_demo_service_runs_the_flow_for_its_demo_user(tmp_path: Path) -> None:
    """`tba-guard serve` on its embedded settings: the demo flow integration and user go through
    the three steps, the demo's callback page shows what it received, and the issued token
    opens the demo RESTlet."""
    from tba_guard.tools.demo import CALLBACK_PATH, load_settings

    demo = load_settings(None)
    integration = next(i for i in demo.integrations if i.authorization_flow)
    user = demo.users[0]
    port = free_port()
    command = [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with FlowServer(tmp_path / "demo.toml", port, command) as server:
        callback = f"http://localhost:{port}{CALLBACK_PATH}"
        client = OAuth1Session(
            integration.consumer_key,
            client_secret=integration.consumer_secret,
            signature_method="HMAC-SHA256",
            callback_uri=callback,
        )
        client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[demo.realm or ""])
        browser = requests.Session()
        authorization_url = client.authorization_url(server.base + AUTHORIZE_PATH, state="demo1")
        page = browser.get(authorization_url)
        token_id = query_of(authorization_url)["oauth_token"]
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "action": "sign_in"}
        data |= {"name": user.name, "password": user.password, "state": "demo1"}
        consent = browser.post(server.base + AUTHORIZE_PATH, data=data)
        assert 'value="allow"' in consent.text
        data = {"oauth_token": token_id, "csrf": csrf_of(consent.text), "state": "demo1"}
        data |= {"decision": "allow", "role": user.roles[0]}
        decided = browser.post(server.base + AUTHORIZE_PATH, data=data, allow_redirects=False)
        location = decided.headers["location"]
        assert location.startswith(callback + "?")
        shown = browser.get(location.replace("localhost", "127.0.0.1", 1))
        assert "Callback received" in shown.text
        assert f'id="oauth_verifier">{query_of(location)["oauth_verifier"]}<' in shown.text
        client.parse_authorization_response(location)
        issued = client.fetch_access_token(server.base + ACCESS_TOKEN_PATH)
        api = OAuth1Session(
            integration.consumer_key,
            client_secret=integration.consumer_secret,
            resource_owner_key=issued["oauth_token"],
            resource_owner_secret=issued["oauth_token_secret"],
            signature_method="HMAC-SHA256",
            realm=demo.realm,
        )
        response = api.get(server.base + "/app/site/hosting/restlet.nl?script=1&deploy=1")
        assert response.status_code == 200, response.text
        assert response.json()["token_id"] == issued["oauth_token"]
        assert response.json()["entity"] == user.entity
        assert response.json()["role"] == user.roles[0]
