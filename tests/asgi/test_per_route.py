"""Per-route protection (`RequireTBA`): a FastAPI dependency and a Starlette decorator that
answer every request exactly as `TBAGuardMiddleware` answers it, for the routes they guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import Depends, FastAPI, Form
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tba_guard import (
    AuditEvent,
    Guard,
    GuardSettings,
    Identity,
    MemoryReplayStore,
    RequireTBA,
    TBAGuardMiddleware,
    TBARejection,
    tba_rejection_handler,
)
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    REALM,
    ROOT,
    TOKEN_ID,
    TOKEN_SECRET,
    Clock,
    FailingStore,
    echo_app,
    free_port,
    make_settings,
    oauth_header,
)

FORM = "application/x-www-form-urlencoded"
PATH = "/services/rest/orders"
URL = BASE_URL + PATH


async def report(request: Request, identity: Identity) -> dict[str, Any]:
    """What an endpoint received: the identity, Starlette's auth, and the verified body."""
    body = await request.body()
    form = await request.form()
    return {
        "token_id": identity.token_id,
        "entity": identity.entity,
        "scope_tba": request.scope["tba"] == identity,
        "user": request.user.display_name,
        "auth": request.auth.scopes,
        "body": body.decode(),
        "form": sorted(form.multi_items()) if body else [],
    }


def starlette_app(require_tba: RequireTBA) -> Starlette:
    @require_tba.endpoint
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse(await report(request, request.scope["tba"]))

    async def open_page(request: Request) -> JSONResponse:
        return JSONResponse({"open": True, "verified": "tba" in request.scope})

    return Starlette(
        routes=[
            Route(PATH, orders, methods=["GET", "POST"]),
            Route("/open", open_page, methods=["GET", "POST"]),
        ]
    )


def fastapi_app(require_tba: RequireTBA) -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(TBARejection, tba_rejection_handler)

    verified = Depends(require_tba)

    @app.api_route(PATH, methods=["GET", "POST"])
    async def orders(request: Request, identity: Identity = verified) -> Any:
        return await report(request, identity)

    @app.api_route("/open", methods=["GET", "POST"])
    async def open_page(request: Request) -> Any:
        return {"open": True, "verified": "tba" in request.scope}

    return app


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    events: list[str]


Options = dict[str, Any]


def through(kind: str, requests: list[dict[str, Any]], **options: Any) -> list[Answer]:
    """Send `requests` in order to one fresh app of `kind`, guarded with `options`."""
    events: list[AuditEvent] = []
    settings: GuardSettings = options.pop("settings", None) or make_settings()
    store_factory: Callable[[], Any] = options.pop(
        "store", lambda: MemoryReplayStore(clock=Clock())
    )
    guard = Guard(
        settings, clock=Clock(), replay_store=store_factory(), audit_hooks=[events.append]
    )
    app: Any
    if kind == "middleware":
        app = TBAGuardMiddleware(echo_app(), guard=guard, **options)
    elif kind == "starlette":
        app = starlette_app(RequireTBA(guard=guard, **options))
    else:
        app = fastapi_app(RequireTBA(guard=guard, **options))
    answers = []
    with TestClient(app, base_url=BASE_URL) as client:
        for request in requests:
            response = client.request(**request)
            answers.append(
                Answer(
                    response.status_code,
                    list(response.headers.multi_items()),
                    response.content,
                    [event.code or event.outcome for event in events],
                )
            )
    return answers


def signed_get(**bend: Any) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": URL,
        "headers": {"Authorization": oauth_header("GET", URL, **bend)},
    }


def form_post(signed_body: str, sent_body: str | None = None) -> dict[str, Any]:
    header = oauth_header("POST", URL, body=signed_body, form=True)
    return {
        "method": "POST",
        "url": URL,
        "content": signed_body if sent_body is None else sent_body,
        "headers": {"Authorization": header, "Content-Type": FORM},
    }


REJECTIONS: dict[str, tuple[Callable[[], list[dict[str, Any]]], Options]] = {
    "missing header": (lambda: [{"method": "GET", "url": URL}], {}),
    "bad signature": (lambda: [signed_get(token_secret="not-the-secret")], {}),
    "replay": (lambda: [signed_get(nonce="nonce-replayed-0001")] * 2, {}),
    "tampered form body": (lambda: [form_post("amount=1", "amount=1000")], {}),
    "store down": (lambda: [signed_get()], {"store": FailingStore}),
    "opaque bad signature": (
        lambda: [signed_get(token_secret="not-the-secret")],
        {"settings": make_settings(error_detail="opaque")},
    ),
    "body too large": (
        lambda: [form_post("memo=" + "x" * 200)],
        {"settings": make_settings(body_max_bytes=64)},
    ),
}
EXPECTED = {
    "missing header": (401, "MissingRequiredParameter"),
    "bad signature": (401, "InvalidSignature"),
    "replay": (401, "NonceUsed"),
    "tampered form body": (401, "InvalidSignature"),
    "store down": (503, "ReplayStoreUnavailable"),
    "opaque bad signature": (401, "InvalidSignature"),
    "body too large": (413, "RequestBodyTooLarge"),
}


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_rejection_answers_what_the_middleware_answers(kind: str, case: str) -> None:
    make_requests, options = REJECTIONS[case]
    requests = make_requests()
    expected = through("middleware", requests, **dict(options))
    answered = through(kind, requests, **dict(options))
    assert answered[-1] == expected[-1]  # status, every header, body and the audit trail
    status, code = EXPECTED[case]
    assert answered[-1].status == status
    assert answered[-1].events[-1] == code


def test_the_rejections_carry_the_challenge_and_the_retry_after() -> None:
    [missing] = through("fastapi", REJECTIONS["missing header"][0]())
    assert dict(missing.headers)["www-authenticate"].startswith(f'OAuth realm="{REALM}"')
    [down] = through("fastapi", [signed_get()], store=FailingStore)
    assert dict(down.headers)["retry-after"] == "1"


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_an_accepted_request_reaches_the_endpoint_with_the_identity(kind: str) -> None:
    [answer] = through(kind, [signed_get()])
    assert answer.status == 200, answer.body
    seen = json.loads(answer.body)
    assert seen["token_id"] == TOKEN_ID
    assert seen["entity"] == "38"
    assert seen["scope_tba"] is True
    assert seen["user"] == "38"
    assert seen["auth"] == ["authenticated"]
    assert answer.events == ["accepted"]


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_the_endpoint_reads_the_form_body_that_was_verified(kind: str) -> None:
    [answer] = through(kind, [form_post("amount=1&memo=first%20order")])
    assert answer.status == 200, answer.body
    seen = json.loads(answer.body)
    assert seen["body"] == "amount=1&memo=first%20order"
    assert seen["form"] == [["amount", "1"], ["memo", "first order"]]


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_unguarded_routes_are_untouched(kind: str) -> None:
    events: list[AuditEvent] = []
    guard = Guard(make_settings(), clock=Clock(), audit_hooks=[events.append])
    build = starlette_app if kind == "starlette" else fastapi_app
    with TestClient(build(RequireTBA(guard=guard)), base_url=BASE_URL) as client:
        response = client.post("/open", content="a=1", headers={"Content-Type": FORM})
    assert response.status_code == 200
    assert response.json() == {"open": True, "verified": False}
    assert events == []


def test_behind_the_middleware_a_route_takes_its_identity_without_checking_twice() -> None:
    # A second verification would find the nonce the middleware just claimed.
    events: list[AuditEvent] = []
    guard = Guard(make_settings(), clock=Clock(), audit_hooks=[events.append])
    app = TBAGuardMiddleware(fastapi_app(RequireTBA(guard=guard)), guard=guard)
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.request(**signed_get())
    assert response.status_code == 200
    assert response.json()["token_id"] == TOKEN_ID
    assert [event.outcome for event in events] == ["accepted"]


def test_without_the_handler_fastapi_still_answers_the_status_and_challenge() -> None:
    app = FastAPI()  # no tba_rejection_handler: FastAPI renders the HTTPException its own way
    verified = Depends(RequireTBA(guard=Guard(make_settings(), clock=Clock())))

    @app.get(PATH)
    async def orders(identity: Identity = verified) -> Any:
        return {"token_id": identity.token_id}

    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(PATH)
    assert response.status_code == 401
    assert 'error="MissingRequiredParameter"' in response.headers["www-authenticate"]
    assert response.headers["cache-control"] == "no-store"


def test_a_fastapi_form_parameter_consumes_the_body_first_and_is_refused_loudly() -> None:
    # FastAPI parses Form parameters before any dependency: there are no bytes left to verify,
    # so the request must fail as a server error, never be accepted.
    app = FastAPI()
    verified, form_field = Depends(RequireTBA(guard=Guard(make_settings(), clock=Clock()))), Form()

    @app.post(PATH)
    async def orders(amount: str = form_field, identity: Identity = verified) -> Any:
        return {"amount": amount}

    with (
        TestClient(app, base_url=BASE_URL) as client,
        pytest.raises(RuntimeError, match="consumed before tba_guard could verify it"),
    ):
        client.request(**form_post("amount=1"))


APP_MODULE = """
from typing import Any

from fastapi import Depends, FastAPI

from tba_guard import (
    GuardSettings, Identity, Integration, RequireTBA, TBARejection, Token, tba_rejection_handler,
)

settings = GuardSettings(
    realm={realm!r},
    integrations=(Integration({consumer_key!r}, {consumer_secret!r}),),
    tokens=(Token({token_id!r}, {token_secret!r}, {consumer_key!r}, entity="38", role="3"),),
)
require_tba = RequireTBA(settings)
app = FastAPI()
app.add_exception_handler(TBARejection, tba_rejection_handler)


@app.get("/healthz")
async def healthz() -> Any:
    return {{"ok": True}}


@app.get("/orders")
async def orders(identity: Identity = Depends(require_tba)) -> Any:
    return {{"token_id": identity.token_id, "entity": identity.entity}}
"""


def test_a_fastapi_dependency_answers_through_a_real_uvicorn(tmp_path: Path) -> None:
    (tmp_path / "per_route_app.py").write_text(
        textwrap.dedent(
            APP_MODULE.format(
                realm=REALM,
                consumer_key=CONSUMER_KEY,
                consumer_secret=CONSUMER_SECRET,
                token_id=TOKEN_ID,
                token_secret=TOKEN_SECRET,
            )
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    log = (tmp_path / "uvicorn.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "per_route_app:app", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT, env=environment
    )
    try:
        deadline = time.monotonic() + 30  # a startup bound, not a timing assertion
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
            time.sleep(0.05)
        url = f"{base}/orders"
        header = oauth_header("GET", url, timestamp=int(time.time()))
        accepted = httpx.get(url, headers={"Authorization": header})
        replayed = httpx.get(url, headers={"Authorization": header})
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"token_id": TOKEN_ID, "entity": "38"}
    assert replayed.status_code == 401
    assert replayed.json()["error"]["code"] == "NonceUsed"
    assert replayed.headers["www-authenticate"].endswith('oauth_problem="nonce_used"')
    assert replayed.headers["cache-control"] == "no-store"


def test_a_plain_function_endpoint_runs_once_verified() -> None:
    require_tba = RequireTBA(guard=Guard(make_settings(), clock=Clock()))

    @require_tba.endpoint
    def orders(request: Request) -> JSONResponse:  # Starlette runs it in the thread pool
        return JSONResponse({"token_id": request.scope["tba"].token_id})

    app = Starlette(routes=[Route(PATH, orders)])
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.request(**signed_get()).json() == {"token_id": TOKEN_ID}
        assert client.get(PATH).status_code == 401
