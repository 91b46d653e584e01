"""The authorization flow tried as an attacker would: one integration's request-token flood,
opaque answers that must not tell failures apart, forged CSRF cookies, guessed passwords, a
per-process store under several workers, and `tba-guard sign` with PLAINTEXT first.

Work is counted (lookups, HMACs), never timed; the clock is injected, nothing sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tba_guard import Guard, GuardSettings
from tba_guard.asgi.flow import WORKERS_ENV, TBAFlow
from tba_guard.core.protocols import TokenStoreError
from tba_guard.core.records import RequestToken, User
from tba_guard.stores.memory import MemoryTokenStore, settings_user_lookup
from tba_guard.stores.redis_tokens import TOMBSTONE_SECONDS, RedisTokenStore
from tests.support import (
    ACCESS_TOKEN_PATH,
    ALICE,
    AUTHORIZE_PATH,
    BASE_URL,
    CALLBACK,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    FLOW_KEY,
    FLOW_SECRET,
    NOW,
    OTHER_KEY,
    OTHER_SECRET,
    REALM,
    REQUEST_TOKEN_PATH,
    SHARED_REDIS_URL,
    Clock,
    CountingCredentials,
    FlowClient,
    Server,
    client_for,
    count_signatures,
    csrf_of,
    delete_prefix,
    echo_app,
    flow_settings,
    form,
    free_port,
    oauth_header,
    run_cli,
    shared_redis,
    start_server,
    stop_server,
    unique_prefix,
    wait_until_up,
    write_config,
)

CAROL = User("44", "carol", "carol-pw-s3cr3t", ("3",))


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- 1. quotas: one integration's flood ends at its own quota ---------------------------------


async def flood(fc: FlowClient, count: int, clock: Clock) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for _ in range(count):
        response = await fc.request_token(timestamp=int(clock.now))
        statuses[response.status_code] += 1
        if response.status_code != 200:
            assert error_code(response) == "RequestTokenLimit"
            assert response.headers["retry-after"]
    return statuses


async def test_default_quota_ends_one_integrations_flood_and_the_other_gets_tokens(
    clock: Clock,
) -> None:
    settings = flow_settings()
    assert settings.request_token_max_per_integration == 1000
    flow = TBAFlow(echo_app(), guard=Guard(settings, clock=clock))
    async for fc in client_for(flow):
        assert await flood(fc, 1010, clock) == Counter({200: 1000, 503: 10})
        other = await fc.request_token(consumer_key=OTHER_KEY, consumer_secret=OTHER_SECRET)
        assert form(other)["oauth_callback_confirmed"] == "true"


async def test_quota_counts_live_tokens_only(clock: Clock) -> None:
    """Exchanged and expired request tokens give their place back."""
    flow = TBAFlow(
        echo_app(), guard=Guard(flow_settings(request_token_max_per_integration=2), clock=clock)
    )
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        await fc.new_request_token()
        assert error_code(await fc.request_token()) == "RequestTokenLimit"
        assert (await fc.access_token(token_id, secret, verifier)).status_code == 200
        await fc.new_request_token()  # the exchanged one no longer counts
        assert error_code(await fc.request_token()) == "RequestTokenLimit"
        clock.now += 600  # every request token expired
        assert (await fc.request_token(timestamp=int(clock.now))).status_code == 200


async def test_a_full_store_drops_expired_and_used_tokens_before_refusing(clock: Clock) -> None:
    store = MemoryTokenStore(max_request_tokens=3, clock=clock)

    def token(token_id: str, consumer_key: str = FLOW_KEY) -> RequestToken:
        return RequestToken(token_id, "secret", consumer_key, CALLBACK, clock.now + 600)

    for token_id in ("a", "b", "c"):
        await store.put_request_token(token(token_id))
    assert await store.consume("a")  # used: only a tombstone now
    await store.put_request_token(token("d", OTHER_KEY))
    assert await store.request_token("a") is None
    clock.now += 600  # b, c and d expired, their tombstones not yet over
    assert clock.now < NOW + 600 + TOMBSTONE_SECONDS
    for token_id in ("e", "f", "g"):
        await store.put_request_token(token(token_id, OTHER_KEY))
    with pytest.raises(TokenStoreError, match="full"):  # three live tokens: nothing to drop
        await store.put_request_token(token("h", OTHER_KEY))
    assert store.live_request_tokens(FLOW_KEY) == 0
    assert store.live_request_tokens(OTHER_KEY) == 3


async def test_redis_quota_ends_one_integrations_flood_and_the_other_gets_tokens(
    clock: Clock, redis_prefix: str
) -> None:
    settings = flow_settings(
        token_store=SHARED_REDIS_URL,
        token_store_key_prefix=redis_prefix,
        request_token_max_per_integration=20,
    )
    one = TBAFlow(echo_app(), guard=Guard(settings, clock=clock))
    two = TBAFlow(
        echo_app(), guard=Guard(settings, clock=clock)
    )  # a second worker sharing the store
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=one), base_url=BASE_URL) as h1,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=two), base_url=BASE_URL) as h2,
        ):
            await redis_flood(FlowClient(h1), FlowClient(h2), one, clock)
    finally:
        for flow in (one, two):
            assert isinstance(flow.tokens, RedisTokenStore)
            await flow.tokens.aclose()


async def redis_flood(fc_one: FlowClient, fc_two: FlowClient, one: TBAFlow, clock: Clock) -> None:
    """Fifteen tokens through one worker, fifteen through the other: the quota is shared."""
    assert (await flood(fc_one, 15, clock))[200] == 15
    assert await flood(fc_two, 15, clock) == Counter({200: 5, 503: 10})
    other = await fc_two.request_token(consumer_key=OTHER_KEY, consumer_secret=OTHER_SECRET)
    assert form(other)["oauth_callback_confirmed"] == "true"

    assert isinstance(one.tokens, RedisTokenStore)
    assert await one.tokens.live_request_tokens(FLOW_KEY) == 20
    token_id, _ = await fc_one.new_request_token(
        consumer_key=OTHER_KEY, consumer_secret=OTHER_SECRET
    )
    assert await one.tokens.consume(token_id)
    assert await one.tokens.live_request_tokens(OTHER_KEY) == 1  # the consumed one left
    clock.now += 600
    assert (await fc_two.request_token(timestamp=int(clock.now))).status_code == 200
    assert await one.tokens.live_request_tokens(FLOW_KEY) == 1


# --- 2. opaque mode: the same answer and the same work for every credential failure ---------


class CountingTokenStore(MemoryTokenStore):
    """The in-process store, counting request-token lookups."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.lookups = 0
        self.asked: list[str] = []

    async def request_token(self, token_id: str) -> RequestToken | None:
        self.lookups += 1
        self.asked.append(token_id)
        return await super().request_token(token_id)


def counting_users() -> tuple[Any, Counter[str]]:
    lookup = settings_user_lookup([ALICE])
    counted: Counter[str] = Counter()

    async def counting(entity: str) -> User | None:
        counted["user"] += 1
        counted["not a name"] += not isinstance(entity, str)
        return await lookup(entity)

    return counting, counted


def wire(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return response.status_code, list(response.headers.raw), response.content


def opaque_flow(clock: Clock) -> tuple[TBAFlow, CountingCredentials, CountingTokenStore, Any]:
    settings = flow_settings(error_detail="opaque")
    credentials = CountingCredentials(settings)
    tokens = CountingTokenStore(clock)
    users, counted = counting_users()
    flow = TBAFlow(
        echo_app(),
        guard=Guard(settings, credentials=credentials, clock=clock),
        tokens=tokens,
        user_lookup=users,
    )
    return flow, credentials, tokens, counted


STEP_ONE_FAILURES: dict[str, dict[str, Any]] = {
    "unknown key": {"consumer_key": "ck-nobody", "consumer_secret": "x"},
    "known key without the flow": {
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
    },
    "blocked integration, realm sent": {
        "consumer_key": "ck-flow-blocked",
        "consumer_secret": "cs-flow-blocked-secret",
    },
    "blocked integration, no realm": {
        "consumer_key": "ck-flow-blocked",
        "consumer_secret": "cs-flow-blocked-secret",
        "realm": None,
    },
    "bad signature": {"consumer_secret": "not-the-secret"},
}


async def test_opaque_step_one_answers_every_credential_failure_alike_with_equal_work(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, credentials, tokens, users = opaque_flow(clock)
    async for fc in client_for(flow):
        # Signed first: oauthlib's own HMACs are not the server's work.
        headers = {
            case: oauth_header(
                "POST",
                BASE_URL + REQUEST_TOKEN_PATH,
                **({"consumer_key": FLOW_KEY, "consumer_secret": FLOW_SECRET} | header),
                token=None,
                token_secret="",
                extra={"oauth_callback": CALLBACK},
            )
            for case, header in STEP_ONE_FAILURES.items()
        }
        signs = count_signatures(monkeypatch)
        answers = {}
        for case, value in headers.items():
            credentials.lookups.clear()
            tokens.lookups, signs[:] = 0, []
            users.clear()
            response = await fc.http.post(REQUEST_TOKEN_PATH, headers={"Authorization": value})
            answers[case] = wire(response)
            work = (credentials.lookups, tokens.lookups, users["user"], signs)
            assert work == (Counter({"integration": 1}), 0, 0, [32]), case
        first = next(iter(answers.values()))
        assert first[0] == 401
        assert all(answer == first for answer in answers.values()), answers


def allowed(token_id: str, **changes: Any) -> RequestToken:
    values: dict[str, Any] = {
        "token_id": token_id,
        "token_secret": "rt-secret",
        "consumer_key": FLOW_KEY,
        "callback": CALLBACK,
        "expires_at": NOW + 600,
        "realm": REALM,
        "decision": "allowed",
        "verifier": "v" * 64,
        "entity": ALICE.entity,
        "role": "3",
    }
    values.update(changes)
    return RequestToken(**values)


STEP_THREE_FAILURES: dict[str, dict[str, Any]] = {
    "unknown key": {"consumer_key": "ck-nobody", "consumer_secret": "x"},
    "known key without the flow": {
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
    },
    "blocked integration": {
        "consumer_key": "ck-flow-blocked",
        "consumer_secret": "cs-flow-b-consumer-secret",
    },
    "bad signature": {"consumer_secret": "not-the-secret"},
    "unknown request token": {"token_id": "f" * 64},
    "undecided request token": {"token_id": "rt-pending"},
    "used request token": {"token_id": "rt-used"},
    "expired request token": {"token_id": "rt-expired"},
    "another integration's request token": {"token_id": "rt-other"},
}


async def test_opaque_step_three_answers_every_credential_failure_alike_with_equal_work(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, credentials, tokens, users = opaque_flow(clock)
    for token in (
        allowed("rt-allowed"),
        allowed("rt-pending", decision="pending", verifier="", entity="", role=""),
        allowed("rt-used", uses=1),
        allowed("rt-expired", expires_at=NOW - 1),
        allowed("rt-other", consumer_key=OTHER_KEY),
    ):
        await tokens.put_request_token(token)
    async for fc in client_for(flow):
        headers = {}
        for case, header in STEP_THREE_FAILURES.items():
            sent = {"consumer_key": FLOW_KEY, "consumer_secret": FLOW_SECRET} | header
            headers[case] = oauth_header(
                "POST",
                BASE_URL + ACCESS_TOKEN_PATH,
                consumer_key=sent["consumer_key"],
                consumer_secret=sent["consumer_secret"],
                token=sent.get("token_id", "rt-allowed"),
                token_secret="rt-secret",
                extra={"oauth_verifier": "v" * 64},
            )
        signs = count_signatures(monkeypatch)
        answers = {}
        for case, value in headers.items():
            credentials.lookups.clear()
            tokens.lookups, tokens.asked, signs[:] = 0, [], []
            users.clear()
            response = await fc.http.post(ACCESS_TOKEN_PATH, headers={"Authorization": value})
            answers[case] = wire(response)
            work = (credentials.lookups, tokens.lookups, users["user"], signs)
            assert work == (Counter({"integration": 1}), 1, 1, [32]), case
            # Real lookups: of the token the request names, and of a name in the directory.
            assert tokens.asked == [STEP_THREE_FAILURES[case].get("token_id", "rt-allowed")]
            assert users["not a name"] == 0, case
        first = next(iter(answers.values()))
        assert first[0] == 401
        assert all(answer == first for answer in answers.values()), answers
        # The token the failures were tried on is still good for its rightful owner.
        monkeypatch.undo()
        issued = await fc.access_token("rt-allowed", "rt-secret", "v" * 64)
        assert issued.status_code == 200, issued.text


# --- 3. cookies and sign-in -------------------------------------------------------------------


def set_cookies(response: httpx.Response) -> dict[str, str]:
    found = {}
    for value in response.headers.get_list("set-cookie"):
        name = value.partition("=")[0]
        found[name] = value
    return found


async def test_over_https_cookies_are_host_prefixed_and_secure(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock))
    async for fc in client_for(flow):
        token_id, _ = await fc.new_request_token()
        page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        signed_in = await fc.sign_in(token_id)
        cookies = set_cookies(page) | set_cookies(signed_in)
        assert set(cookies) == {"__Host-tba_csrf", "__Host-tba_session"}
        for value in cookies.values():
            attributes = [part.strip().lower() for part in value.split(";")[1:]]
            assert "secure" in attributes
            assert "path=/" in attributes
            assert not any(part.startswith("domain") for part in attributes)


async def test_over_plain_http_cookies_are_plain_and_not_secure(clock: Clock) -> None:
    """Development only: a browser would drop a `__Host-` or Secure cookie over HTTP."""
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock))
    async for fc in client_for(flow, "http://127.0.0.1:8000"):
        token_id, _ = await fc.new_request_token()
        page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        [(name, value)] = set_cookies(page).items()
        assert name == "tba_csrf"
        assert "secure" not in value.lower()


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000", BASE_URL])
async def test_a_csrf_cookie_the_server_did_not_issue_is_refused(
    clock: Clock, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Login CSRF by cookie injection: the attacker plants a cookie value it chose, and posts
    the sign-in form with the CSRF value the page showed for that cookie."""
    caplog.set_level("INFO", logger="tba_guard.audit")
    name = "tba_csrf" if base.startswith("http:") else "__Host-tba_csrf"
    planted = {"Cookie": f"{name}=chosen-by-the-attacker"}
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock))
    async for fc in client_for(flow, base):
        token_id, _ = await fc.new_request_token()
        page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id}, headers=planted)
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "action": "sign_in"}
        data |= {"name": ALICE.name, "password": ALICE.password}
        fc.http.cookies.clear()
        response = await fc.http.post(AUTHORIZE_PATH, data=data, headers=planted)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers  # not signed in
        assert name in set_cookies(page)  # the page replaced it with one the server issued
    reasons = [r.tba_audit["reason"] for r in caplog.records if hasattr(r, "tba_audit")]
    assert "consent form without a CSRF cookie issued here" in reasons


def throttled_settings() -> GuardSettings:
    return flow_settings(users=[ALICE, CAROL])


async def sign_in_as(fc: FlowClient, clock: Clock, user: User) -> httpx.Response:
    return await fc.sign_in(await fresh_token(fc, clock), user)


async def fresh_token(fc: FlowClient, clock: Clock) -> str:
    token_id, _ = await fc.new_request_token(timestamp=int(clock.now))
    return token_id


async def test_sign_in_is_throttled_per_name_even_for_the_right_password(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tba_guard.audit")
    flow = TBAFlow(echo_app(), guard=Guard(throttled_settings(), clock=clock))
    async for fc in client_for(flow):
        token_id = await fresh_token(fc, clock)
        for _ in range(5):
            wrong = await fc.sign_in(token_id, User("0", ALICE.name, "guess"))
            assert wrong.status_code == 401
        refused = await fc.sign_in(token_id, ALICE)
        assert refused.status_code == 429
        assert "Too many attempts" in refused.text
        assert 0 < int(refused.headers["retry-after"]) <= 900
        assert "tba_session" not in refused.headers.get("set-cookie", "")
    async for other in client_for(flow, address="10.0.0.7"):  # the name is locked everywhere
        assert (await sign_in_as(other, clock, ALICE)).status_code == 429
        assert (await sign_in_as(other, clock, CAROL)).status_code == 303
    clock.now += 900  # the window has passed
    async for fc in client_for(flow):
        assert (await sign_in_as(fc, clock, ALICE)).status_code == 303
    reasons = [r.tba_audit["reason"] for r in caplog.records if hasattr(r, "tba_audit")]
    assert reasons.count("sign-in failed") == 5
    assert reasons.count("sign-in throttled") == 2
    assert "guess" not in caplog.text


async def test_sign_in_is_throttled_per_client_address(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), guard=Guard(throttled_settings(), clock=clock))
    async for fc in client_for(flow):
        token_id = await fresh_token(fc, clock)
        for attempt in range(20):  # a different name each time: only the address adds up
            wrong = await fc.sign_in(token_id, User("0", f"user{attempt}", "guess"))
            assert wrong.status_code == 401
        assert (await fc.sign_in(token_id, CAROL)).status_code == 429
    async for elsewhere in client_for(flow, address="10.0.0.7"):
        assert (await sign_in_as(elsewhere, clock, CAROL)).status_code == 303


# --- 4. several worker processes on per-process stores ----------------------------------------
#
# The count is `TBAFlow(workers=N)`, else WEB_CONCURRENCY (the default of uvicorn's `--workers`
# and of gunicorn's `workers`), read in the serving process; unknown, an app built in one
# process and serving in another is refused.

ALLOW = "TBA_GUARD_ALLOW_PER_PROCESS_STORES"
MEMORY_STORES = 'replay_store = "memory"'


@pytest.fixture
def no_stated_count(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither WEB_CONCURRENCY nor the acknowledgement from the environment the suite runs in."""
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.delenv(ALLOW, raising=False)
    return monkeypatch


def memory_flow(workers: int | None = None) -> TBAFlow:
    """The in-process replay and token stores (a shared session_secret, so two of three)."""
    return TBAFlow(settings=flow_settings(session_secret="s" * 32), workers=workers)


@pytest.mark.parametrize(
    ("workers", "environment", "refused"),
    [
        (2, None, True),
        (1, None, False),
        (2, "1", True),
        (1, "4", False),
        (1, "many", False),  # a stated count: the variable is not read at all
    ],
)
def test_a_stated_worker_count_wins_over_web_concurrency(
    no_stated_count: pytest.MonkeyPatch, workers: int, environment: str | None, refused: bool
) -> None:
    if environment is not None:
        no_stated_count.setenv(WORKERS_ENV, environment)
    flow = memory_flow(workers)
    assert flow.worker_count() == workers
    problem = flow.process_problem()
    if refused:
        assert problem is not None
        assert f"this app runs in {workers} worker processes" in problem
        assert MEMORY_STORES in problem
        assert 'token_store = "memory"' in problem
        assert "session_secret)" not in problem  # it has one
    else:
        assert problem is None


@pytest.mark.parametrize(("environment", "count"), [(None, None), ("1", 1), ("3", 3), (" 2\n", 2)])
def test_web_concurrency_is_the_count_when_none_is_stated(
    no_stated_count: pytest.MonkeyPatch, environment: str | None, count: int | None
) -> None:
    if environment is not None:
        no_stated_count.setenv(WORKERS_ENV, environment)
    flow = memory_flow()
    assert flow.worker_count() == count
    problem = flow.process_problem()
    if count is not None and count > 1:
        assert problem is not None
        assert f"this app runs in {count} worker processes" in problem
    else:
        assert problem is None  # one worker, or unknown in the process that built it


def test_web_concurrency_is_read_where_the_app_serves_once_per_process(
    no_stated_count: pytest.MonkeyPatch,
) -> None:
    """Set after the app was built (as `tba-guard serve --workers 1` does), it still counts;
    changed after the first check, it no longer does."""
    flow = memory_flow()
    no_stated_count.setenv(WORKERS_ENV, "2")
    first = flow.process_problem()
    assert first is not None
    assert "2 worker processes" in first
    no_stated_count.setenv(WORKERS_ENV, "1")
    assert flow.process_problem() == first


@pytest.mark.parametrize("environment", ["", "two", "0", "-2", "2.5"])
def test_a_malformed_web_concurrency_refuses_per_process_stores(
    no_stated_count: pytest.MonkeyPatch, environment: str
) -> None:
    no_stated_count.setenv(WORKERS_ENV, environment)
    flow = memory_flow()
    with pytest.raises(ValueError, match="is not a number of worker processes"):
        flow.worker_count()
    problem = flow.process_problem()
    assert problem is not None
    assert problem.startswith(
        f"tba_guard refuses to serve: WEB_CONCURRENCY={environment!r} is not a number of "
        "worker processes, so it cannot tell whether other workers serve this app"
    )
    assert MEMORY_STORES in problem
    assert "TBAFlow(workers=N)" in problem


def test_a_malformed_web_concurrency_is_ignored_where_the_count_does_not_matter(
    no_stated_count: pytest.MonkeyPatch,
) -> None:
    """Shared stores (nothing is connected to: the check only looks at which they are), or
    per-process stores acknowledged."""
    no_stated_count.setenv(WORKERS_ENV, "two")
    shared = flow_settings(
        replay_store=SHARED_REDIS_URL, token_store=SHARED_REDIS_URL, session_secret="s" * 32
    )
    flow = TBAFlow(settings=shared)
    assert flow.per_process_stores() == []
    assert flow.process_problem() is None
    no_stated_count.setenv(ALLOW, "1")
    assert memory_flow().process_problem() is None


@pytest.mark.parametrize("workers", [0, -1])
def test_a_stated_worker_count_below_one_is_refused_where_the_flow_is_built(workers: int) -> None:
    expected = f"workers must be 1 or more worker processes, not {workers}"
    with pytest.raises(ValueError, match=expected):
        memory_flow(workers)


def problem_in_a_fork(flow: TBAFlow) -> str | None:
    """`flow.process_problem()` in a child forked from this process (which built `flow`)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, only the answer down the pipe
        status = 1
        try:
            os.close(read)
            os.write(write, json.dumps(flow.process_problem()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    found: str | None = json.loads(data)
    return found


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_count_unknown_an_app_forked_after_it_was_built_refuses(
    no_stated_count: pytest.MonkeyPatch,
) -> None:
    """A server that forks after loading the app (`gunicorn --preload`), told no count."""
    problem = problem_in_a_fork(memory_flow())
    assert problem is not None
    assert "this app runs in a process forked after it was built" in problem
    assert MEMORY_STORES in problem


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_told_it_is_the_one_worker_serves(no_stated_count: pytest.MonkeyPatch) -> None:
    assert problem_in_a_fork(memory_flow(workers=1)) is None
    no_stated_count.setenv(WORKERS_ENV, "1")
    assert problem_in_a_fork(memory_flow()) is None


async def test_a_refusing_process_fails_its_lifespan_startup_and_answers_503(
    no_stated_count: pytest.MonkeyPatch,
) -> None:
    flow = memory_flow(workers=2)
    problem = flow.process_problem()
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await flow({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == [{"type": "lifespan.startup.failed", "message": problem}]
    transport = httpx.ASGITransport(app=flow)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "60"
    assert "misconfigured" in answer.text
    assert problem is not None
    assert problem not in answer.text  # the reason is for the log, not for the client


def uvicorn_factory(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """`uvicorn --factory tba_guard.tools.demo:create_app ARGS` on a free loopback port (the source
    tree or the installed package, whichever this interpreter imports), in its own group; no
    WEB_CONCURRENCY or acknowledgement of the caller's unless in `env`."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "tba_guard.tools.demo:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    log = tmp_path / f"uvicorn.{port}.log"
    unset: dict[str, str | None] = {"TBA_GUARD_CONFIG": None, WORKERS_ENV: None, ALLOW: None}
    return start_server(command, log, port=port, env={**unset, **(env or {})})


def test_uvicorn_with_web_concurrency_2_on_the_memory_store_refuses_to_start(
    tmp_path: Path,
) -> None:
    """WEB_CONCURRENCY=2 and no --workers: uvicorn runs two workers, and the flow in each reads
    the same variable and fails its startup."""
    server = uvicorn_factory(tmp_path, env={WORKERS_ENV: "2"})
    try:
        result = wait_until_up(server)
    finally:
        stop_server(server)
    output = server.output()
    assert result == "exited", output  # uvicorn stops its parent when a worker cannot start
    assert "Started parent process" in output  # uvicorn's supervisor: it read 2 workers too
    assert "tba_guard refuses to serve: this app runs in 2 worker processes" in output
    assert MEMORY_STORES in output
    assert "Application startup complete" not in output


def test_uvicorn_with_a_malformed_web_concurrency_on_the_memory_store_refuses_to_start(
    tmp_path: Path,
) -> None:
    """uvicorn told `--workers 1` does not read WEB_CONCURRENCY; the flow, told nothing, does."""
    server = uvicorn_factory(tmp_path, "--workers", "1", env={WORKERS_ENV: "two"})
    try:
        result = wait_until_up(server)
    finally:
        stop_server(server)
    output = server.output()
    assert result == "exited", output
    assert "tba_guard refuses to serve: WEB_CONCURRENCY='two' is not a number of worker" in output
    assert "Application startup complete" not in output


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--workers", "1"], {}),
        ([], {WORKERS_ENV: "1"}),
        ([], {WORKERS_ENV: "2", ALLOW: "1"}),
    ],
    ids=["one worker", "WEB_CONCURRENCY=1", "two workers, acknowledged"],
)
def test_uvicorn_factory_serves_one_worker_or_an_acknowledged_several(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    server = uvicorn_factory(tmp_path, *args, env=env)
    try:
        result = wait_until_up(server)
    finally:
        stop_server(server)
    assert result == "served", server.output()


def test_uvicorn_with_web_concurrency_2_on_redis_serves(tmp_path: Path) -> None:
    client = shared_redis()
    prefix = unique_prefix()
    config = write_config(tmp_path, store=SHARED_REDIS_URL)
    config.write_text(
        config.read_text().replace(
            "[guard]\n",
            f'[guard]\nreplay_store_key_prefix = "{prefix}"\ntoken_store_key_prefix = "{prefix}"\n',
            1,
        )
    )
    env = {"TBA_GUARD_CONFIG": str(config), WORKERS_ENV: "2"}
    server = uvicorn_factory(tmp_path, env=env)
    try:
        result = wait_until_up(server)
    finally:
        stop_server(server)
        delete_prefix(client, prefix)
        client.close()
    assert result == "served", server.output()
    assert "Started parent process" in server.output()


# --- 5. `tba-guard sign` with PLAINTEXT first -------------------------------------------------

SIGN_SECRETS = ("cs-order-sync-secret", "ts-alice-token-secret")


def sign_plaintext(tmp_path: Path, methods: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, methods=methods)
    args = ["--config", str(config), "--consumer-key", "ck-order-sync", "--token", "tk-alice"]
    return run_cli("sign", *args, *extra, "GET", "https://example.com/x")


def test_sign_with_plaintext_first_prints_no_secret(tmp_path: Path) -> None:
    done = sign_plaintext(tmp_path, '["PLAINTEXT", "HMAC-SHA256"]')
    assert done.returncode == 0, done.stderr
    assert 'oauth_signature_method="HMAC-SHA256"' in done.stdout
    for secret in SIGN_SECRETS:
        assert secret not in done.stdout + done.stderr


def test_sign_with_plaintext_only_refuses_without_print_secrets(tmp_path: Path) -> None:
    done = sign_plaintext(tmp_path, '["PLAINTEXT"]')
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--print-secrets" in done.stderr
    for secret in SIGN_SECRETS:
        assert secret not in done.stderr


def test_sign_prints_plaintext_secrets_when_asked_by_name(tmp_path: Path) -> None:
    done = sign_plaintext(tmp_path, '["PLAINTEXT", "HMAC-SHA256"]', "--print-secrets")
    assert done.returncode == 0, done.stderr
    assert 'oauth_signature_method="PLAINTEXT"' in done.stdout
    assert 'oauth_signature="cs-order-sync-secret%26ts-alice-token-secret"' in done.stdout
