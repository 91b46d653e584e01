"""The `tba-guard` command line: `serve` as a real uvicorn process, `sign`, and their errors.

The demo service is started as a subprocess on a free loopback port and spoken to over HTTP;
headers come from running `tba-guard sign` as a subprocess too, as a user would. `sign` stamps
requests with the wall clock, which is what a real server expects.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx2
import pytest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header
from starlette.testclient import TestClient

from tba_guard import GuardSettings, verify_signature
from tba_guard.asgi.flow import WORKERS_ENV
from tba_guard.tools.cli import DEMO_FACTORY, authorization_header, main, uvicorn_target
from tba_guard.tools.demo import CONFIG_ENV, create_app, load_settings
from tests.support import (
    NOW,
    SHARED_REDIS_URL,
    Server,
    cli_command,
    delete_prefix,
    free_port,
    oauth_header,
    require_tools,
    run_cli,
    running_server,
    shared_redis,
    unique_prefix,
    write_config,
)

DEMO = load_settings(None)
DEMO_KEY = DEMO.integrations[0].consumer_key
DEMO_SECRET = DEMO.integrations[0].consumer_secret
DEMO_TOKEN = DEMO.tokens[0].token_id
DEMO_TOKEN_SECRET = DEMO.tokens[0].token_secret
SECRETS = (DEMO_SECRET, DEMO_TOKEN_SECRET)
RESTLET = "/app/site/hosting/restlet.nl"
FORM = "application/x-www-form-urlencoded"
STARTUP_LIMIT = 30.0  # seconds to wait for the workers' output (not a timing assertion)


def sign(*args: str) -> str:
    done = run_cli("sign", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def running_serve(log: Path, *args: str) -> Iterator[Server]:
    """`tba-guard serve ARGS` as a real process on a free loopback port, stopped afterwards
    (with its worker processes: it leads its own process group)."""
    port = free_port()
    command = [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with running_server(command, log, port=port) as server:
        yield server


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo service on the embedded settings, shared by the tests of this module."""
    with running_serve(tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


def wait_for_output(server: Server, text: str, *, count: int) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while server.output().count(text) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} did not appear {count} times:\n{server.output()}")
        time.sleep(0.1)


def demo_sign(method: str, url: str, *extra: str) -> str:
    return sign("--consumer-key", DEMO_KEY, "--token", DEMO_TOKEN, *extra, method, url)


# --- serve ------------------------------------------------------------------------------------


def test_serve_answers_a_get_signed_by_tba_guard_sign_with_the_verified_identity(
    demo_server: Server,
) -> None:
    url = f"{demo_server.base}{RESTLET}?script=12&deploy=1&q=a%20b"
    header = demo_sign("GET", url)

    response = httpx2.get(url, headers={"Authorization": header})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "consumer_key": DEMO_KEY,
        "token_id": DEMO_TOKEN,
        "realm": DEMO.realm,
        "entity": "38",
        "role": "3",
        "scheme": "tba",
        "method": "GET",
        "path": RESTLET,
        "query": "script=12&deploy=1&q=a%20b",
        "body_bytes": 0,
    }


def test_serve_answers_a_post_with_a_signed_form_body(demo_server: Server) -> None:
    url = f"{demo_server.base}/services/rest/record/v1/salesOrder"
    body = "entity=38&memo=first%20order&line=1&line=2"
    header = demo_sign("POST", url, "--body", body)

    response = httpx2.post(
        url, content=body.encode(), headers={"Authorization": header, "Content-Type": FORM}
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["method"], answer["path"]) == ("POST", "/services/rest/record/v1/salesOrder")
    assert answer["body_bytes"] == len(body)
    assert (answer["token_id"], answer["entity"]) == (DEMO_TOKEN, "38")


def test_serve_checks_the_body_hash_of_a_signed_json_body(demo_server: Server) -> None:
    url = f"{demo_server.base}{RESTLET}?script=12&deploy=1"
    body = '{"entity": 38}'
    header = demo_sign("POST", url, "--body", body, "--content-type", "application/json")
    json_headers = {"Authorization": header, "Content-Type": "application/json"}

    tampered = httpx2.post(url, content=b'{"entity": 39}', headers=json_headers)
    accepted = httpx2.post(url, content=body.encode(), headers=json_headers)

    assert tampered.status_code == 401
    assert tampered.json()["error"]["code"] == "InvalidSignature"
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["body_bytes"] == len(body)


def test_serve_refuses_the_same_header_again_with_nonce_used(demo_server: Server) -> None:
    url = f"{demo_server.base}{RESTLET}?script=12&deploy=1"
    header = demo_sign("GET", url)

    first = httpx2.get(url, headers={"Authorization": header})
    again = httpx2.get(url, headers={"Authorization": header})

    assert first.status_code == 200
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "NonceUsed"
    assert again.headers["www-authenticate"] == (
        f'OAuth realm="{DEMO.realm}", error="NonceUsed", oauth_problem="nonce_used"'
    )
    assert again.headers["cache-control"] == "no-store"


def test_serve_leaves_healthz_unguarded_and_guards_the_rest(demo_server: Server) -> None:
    health = httpx2.get(f"{demo_server.base}/healthz")
    unsigned = httpx2.get(f"{demo_server.base}{RESTLET}?script=12&deploy=1")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "MissingRequiredParameter"


def test_serve_prints_first_request_lines_that_work_in_a_shell(demo_server: Server) -> None:
    require_tools("curl", "bash", why="the printed lines are curl in bash")
    banner = demo_server.output().split("INFO:")[0]
    lines = [line.strip() for line in banner.splitlines() if line.startswith("  ")]
    assert len(lines) == 4, banner

    done = subprocess.run(
        ["bash", "-euc", "\n".join(lines)], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    statuses = re.findall(r"HTTP/1\.1 (\d{3}) ", done.stdout)
    assert statuses == ["200", "401"], done.stdout
    assert f'"token_id":"{DEMO_TOKEN}"' in done.stdout
    assert '"code": "NonceUsed"' in done.stdout


def test_serve_never_prints_or_logs_a_secret(demo_server: Server) -> None:
    url = f"{demo_server.base}{RESTLET}?script=12&deploy=1"
    header = demo_sign("GET", url)
    httpx2.get(url, headers={"Authorization": header})
    httpx2.get(url, headers={"Authorization": header})

    output = demo_server.output()

    assert "accepted" in output  # the audit log is shown...
    assert "NonceUsed" in output
    for secret in SECRETS:
        assert secret not in output
    assert "oauth_signature" not in output


def test_serve_with_several_workers_and_the_memory_store_refuses_with_the_redis_advice(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    for args in (["--workers", "2"], ["--config", str(config), "--workers", "2"]):
        done = run_cli("serve", "--port", str(free_port()), *args)

        assert done.returncode == 2, done.stdout + done.stderr
        assert "Redis replay store" in done.stderr
        assert "replay_store" in done.stderr
        assert "Traceback" not in done.stderr
        assert "Uvicorn running" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("replace", "named"),
    [
        ('token_store = "redis://127.0.0.1:6379/0"', "token_store"),
        ('session_secret = "cli-test-session-secret-0123456789"', "session_secret"),
    ],
)
def test_serve_with_several_workers_refuses_a_per_process_token_store_or_session_key(
    tmp_path: Path, replace: str, named: str
) -> None:
    config = write_config(tmp_path, store="redis://127.0.0.1:6379/0")
    replacement = 'token_store = "memory"' if named == "token_store" else ""
    config.write_text(config.read_text().replace(replace, replacement))
    done = run_cli("serve", "--port", str(free_port()), "--config", str(config), "--workers", "2")
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[guard]\ntimestamp_tolerance = "soon"\n', "timestamp_tolerance"),
        ("[guard]\ntolerance = 5\n", "'tolerance'"),
        ('[[tokens]]\ntoken_id = "t"\ntoken_secret = "s"\n', "'consumer_key'"),
        ("[guard\n", "not valid TOML"),
    ],
)
def test_serve_with_a_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    config = write_config(tmp_path, text=text)

    done = run_cli("serve", "--config", str(config), "--port", str(free_port()))

    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_serve_with_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    done = run_cli("serve", "--config", str(tmp_path / "absent.toml"))

    assert done.returncode == 2
    assert "absent.toml" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_two_workers_and_redis_refuses_every_replay(tmp_path: Path) -> None:
    client = shared_redis()
    prefix = unique_prefix()
    config = write_config(tmp_path, store=SHARED_REDIS_URL)
    config.write_text(
        config.read_text().replace(
            "[guard]\n", f'[guard]\nreplay_store_key_prefix = "{prefix}"\n', 1
        )
    )
    settings = GuardSettings.from_toml(config)
    try:
        with running_serve(
            tmp_path / "serve.log", "--config", str(config), "--workers", "2"
        ) as srv:
            wait_for_output(srv, "Started server process", count=2)  # both workers are up
            url = f"{srv.base}{RESTLET}?script=12&deploy=1"
            headers = [
                authorization_header(
                    settings, "GET", url, consumer_key="ck-order-sync", token_id="tk-alice"
                )
                for _ in range(6)
            ]
            # A fresh connection for each request, so the kernel spreads them over the workers.
            first = [httpx2.get(url, headers={"Authorization": h}).status_code for h in headers]
            again = [httpx2.get(url, headers={"Authorization": h}) for h in headers]
            assert len(list(client.scan_iter(match=prefix + "*"))) == len(headers)
    finally:
        delete_prefix(client, prefix)
        client.close()

    assert first == [200] * len(headers)
    assert [r.status_code for r in again] == [401] * len(headers)
    assert {r.json()["error"]["code"] for r in again} == {"NonceUsed"}


def test_serve_hands_several_workers_to_its_supervisor_as_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tba_guard.tools import supervisor

    calls: list[tuple[dict[str, Any], int]] = []

    def supervise(options: dict[str, Any], listeners: list[Any], workers: int) -> int:
        calls.append((options, workers))
        return 0

    # Neither a port bound nor workers started: what serve asks of its supervisor is the point.
    monkeypatch.setattr(supervisor, "worker_listeners", lambda host, port, workers: [])
    monkeypatch.setattr(supervisor, "supervise", supervise)
    monkeypatch.setenv(CONFIG_ENV, "restored after the test")
    monkeypatch.setenv(WORKERS_ENV, "restored after the test")
    config = write_config(tmp_path, store="redis://127.0.0.1:6379/0")

    status = main(["serve", "--config", str(config), "--workers", "3", "--port", "8123"])

    assert status == 0
    [(options, workers)] = calls
    assert options["app"] == DEMO_FACTORY
    assert options["factory"] is True
    assert (workers, options["port"], options["http"]) == (3, 8123, "h11")
    assert options["proxy_headers"] is False
    assert os.environ[CONFIG_ENV] == str(config.resolve())
    assert os.environ[WORKERS_ENV] == "3"  # what the flow in each spawned worker reads


def test_demo_factory_reads_the_settings_file_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, "restored after the test")
    config = write_config(tmp_path)
    app, factory = uvicorn_target(str(config), GuardSettings.from_toml(config), workers=2)
    assert (app, factory) == (DEMO_FACTORY, True)

    with TestClient(create_app(), base_url="http://127.0.0.1:8000") as client:
        health = client.get("/healthz")
        unsigned = client.get(RESTLET)

    assert health.status_code == 200
    assert unsigned.status_code == 401
    assert 'realm="7654321_SB1"' in unsigned.headers["www-authenticate"]


# --- sign -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "content_type"),
    [
        (
            "GET",
            "https://7654321-sb1.restlets.example.com/app/site/hosting/restlet.nl"
            "?script=12&deploy=1&q=%C3%A9t%C3%A9",
            None,
            None,
        ),
        (
            "POST",
            "https://7654321-sb1.restlets.example.com/services/rest/record/v1/customer",
            "a=1&b=x%20y&a=0",
            FORM,
        ),
        (
            "PUT",
            "http://127.0.0.1:8000/services/rest/record/v1/customer/7?expand=true",
            '{"companyName": "Acme"}',
            "application/json",
        ),
    ],
)
def test_sign_prints_a_header_that_verify_signature_accepts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
    url: str,
    body: str | None,
    content_type: str | None,
) -> None:
    config = write_config(tmp_path)
    args = ["sign", "--config", str(config), "--consumer-key", "ck-order-sync"]
    args += ["--token", "tk-alice"]
    if body is not None:
        args += ["--body", body, "--content-type", str(content_type)]

    assert main([*args, method, url]) == 0
    header = capsys.readouterr().out.strip()

    headers = {"Authorization": header}
    if content_type:
        headers["Content-Type"] = content_type
    sent = body or ""
    assert header.startswith('OAuth realm="7654321_SB1", ')
    assert 'oauth_signature_method="HMAC-SHA256"' in header
    assert verify_signature(
        method, url, headers, sent, "cs-order-sync-secret", "ts-alice-token-secret"
    )
    assert not verify_signature(method, url, headers, sent, "cs-order-sync-secret", "wrong")
    # And by oauthlib, so that a base-string bug shared by `sign` and the verifier shows.
    form = content_type == "application/x-www-form-urlencoded"
    params = oauth_signature.collect_parameters(
        uri_query=urlsplit(url).query,
        body=sent if form else None,
        headers={"Authorization": header},
        exclude_oauth_signature=True,
    )
    base = oauth_signature.signature_base_string(
        method,
        oauth_signature.base_string_uri(url),
        oauth_signature.normalize_parameters(params),
    )
    sent_signature = unquote(dict(parse_authorization_header(header))["oauth_signature"])
    expected = oauth_signature.sign_hmac_sha256(
        base, "cs-order-sync-secret", "ts-alice-token-secret"
    )
    assert sent_signature == expected
    assert "cs-order-sync-secret" not in header
    assert "ts-alice-token-secret" not in header


def test_sign_uses_the_first_signature_method_of_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, methods='["HMAC-SHA512", "HMAC-SHA256"]')
    url = "https://7654321-sb1.restlets.example.com/app/site/hosting/restlet.nl?script=1"

    args = ["--config", str(config), "--consumer-key", "ck-order-sync", "--token", "tk-alice"]
    assert main(["sign", *args, "GET", url]) == 0
    header = capsys.readouterr().out.strip()

    assert 'oauth_signature_method="HMAC-SHA512"' in header
    assert verify_signature(
        "GET", url, {"Authorization": header}, "", "cs-order-sync-secret", "ts-alice-token-secret"
    )


def test_sign_realm_defaults_to_the_configured_one_and_can_be_changed_or_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    url = "https://example.com/x"
    base = ["sign", "--config", str(config), "--consumer-key", "ck-order-sync"]

    headers = []
    for extra in ([], ["--realm", "7654321"], ["--realm", ""]):
        assert main([*base, *extra, "GET", url]) == 0
        headers.append(capsys.readouterr().out.strip())

    assert headers[0].startswith('OAuth realm="7654321_SB1", ')
    assert headers[1].startswith('OAuth realm="7654321", ')
    assert "realm=" not in headers[2]
    assert all("oauth_token=" not in header for header in headers)  # no --token, no token


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--consumer-key", "ck-unknown"], "'ck-unknown'"),
        (["--consumer-key", "ck-order-sync", "--token", "tk-unknown"], "'tk-unknown'"),
        (["--consumer-key", "ck-other", "--token", "tk-alice"], "belongs to integration"),
    ],
)
def test_sign_with_unknown_credentials_exits_2_naming_them(
    tmp_path: Path, args: list[str], named: str
) -> None:
    config = write_config(tmp_path)

    done = run_cli("sign", "--config", str(config), *args, "GET", "https://example.com/x")

    assert done.returncode == 2
    assert done.stdout == ""
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_sign_refuses_a_request_oauthlib_cannot_sign(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sign", "--consumer-key", DEMO_KEY, "--token", DEMO_TOKEN]

    assert main([*base, "--body", "a=1", "GET", "http://127.0.0.1:8000/x"]) == 2
    assert "cannot sign this request" in capsys.readouterr().err
    assert main([*base, "FETCH", "http://127.0.0.1:8000/x"]) == 2
    assert "METHOD 'FETCH'" in capsys.readouterr().err


def test_sign_without_config_uses_the_embedded_demo_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "http://127.0.0.1:8000/app/site/hosting/restlet.nl?script=1&deploy=1"

    assert main(["sign", "--consumer-key", DEMO_KEY, "--token", DEMO_TOKEN, "GET", url]) == 0
    header = capsys.readouterr().out.strip()

    assert f'realm="{DEMO.realm}"' in header
    assert verify_signature("GET", url, {"Authorization": header}, "", *SECRETS)


# --- explain ----------------------------------------------------------------------------------


def test_explain_exits_0_for_an_acceptable_request_and_1_naming_the_code_for_a_rejected_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "http://127.0.0.1:8000/app/site/hosting/restlet.nl?script=1&deploy=1"
    signed = {"consumer_key": DEMO_KEY, "consumer_secret": DEMO_SECRET, "token": DEMO_TOKEN}
    good = oauth_header("GET", url, **signed, token_secret=DEMO_TOKEN_SECRET, realm=DEMO.realm)
    bad = oauth_header("GET", url, **signed, token_secret="not-the-secret", realm=DEMO.realm)
    at = ["--now", str(NOW)]

    # Twice: explain never claims the nonce, so the same header stays acceptable.
    assert main(["explain", "GET", url, "--header", good, *at]) == 0
    assert main(["explain", "GET", url, "--header", good, *at]) == 0
    accepted = capsys.readouterr().out
    assert main(["explain", "GET", url, "--header", bad, *at]) == 1
    rejected = capsys.readouterr().out

    assert "InvalidSignature" not in accepted.split("Accepted")[-1]
    assert "Rejected: InvalidSignature" in rejected
    for secret in SECRETS:
        assert secret not in accepted + rejected


def test_explain_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, text="[guard]\nnonce_min_length = 0\n")

    done = run_cli("explain", "--config", str(config), "GET", "http://x/", "--header", "OAuth a")

    assert done.returncode == 2
    assert "nonce_min_length" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_dates_every_response_once(demo_server: Server) -> None:
    url = f"{demo_server.base}{RESTLET}?script=12&deploy=1"
    accepted = httpx2.get(url, headers={"Authorization": demo_sign("GET", url)})
    rejected = httpx2.get(url, headers={"Authorization": 'OAuth realm="x"'})
    unguarded = httpx2.get(f"{demo_server.base}/healthz")
    assert (accepted.status_code, rejected.status_code, unguarded.status_code) == (200, 400, 200)
    for response in (accepted, rejected, unguarded):
        # uvicorn's own Date is off: the guard dates rejections, the demo app the rest.
        assert len(response.headers.get_list("date")) == 1, response.headers
