"""A proxy ended TLS in front of the guard: the client signed https://public-host/..., the
guard built http://... Through a real uvicorn whose proxy-header middleware does not trust the
peer (its forwarded_allow_ips name another proxy), the rejection stays InvalidSignature, the
audit record's detail names the URL that would verify and the fix, and opaque mode keeps it off
the wire. Also the start-up warning `tba-guard serve` gives for that configuration."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from tba_guard.tools.cli import main
from tests.support import ROOT
from tests.support.servers import CLI_CONFIG, free_port, running_server, write_config
from tests.support.signing import CONSUMER_KEY, CONSUMER_SECRET, REALM, TOKEN_ID, TOKEN_SECRET

PUBLIC_HOST = "123456-sb1.restlets.example.com"
PATH = "/app/site/hosting/restlet.nl?script=7&deploy=1"

APP = """
import json, os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tba_guard import Guard, TBAGuardMiddleware
from tests.support.signing import make_settings

def write(event):
    with open(os.environ["AUDIT_FILE"], "a") as out:
        out.write(json.dumps({"code": event.code, "detail": event.detail}) + "\\n")

async def ok(request):
    return PlainTextResponse("ok")

settings = make_settings(error_detail=os.environ["ERROR_DETAIL"], exempt_paths=["/healthz"])
inner = Starlette(routes=[Route("/healthz", ok), Route("/app/site/hosting/restlet.nl", ok)])
app = TBAGuardMiddleware(inner, guard=Guard(settings, audit_hooks=[write]))
"""


def signed_for_public_url() -> dict[str, str]:
    """What a client configured with the public URL sends: oauthlib signs https://public-host."""
    client = Client(
        CONSUMER_KEY,
        client_secret=CONSUMER_SECRET,
        resource_owner_key=TOKEN_ID,
        resource_owner_secret=TOKEN_SECRET,
        signature_method=SIGNATURE_HMAC_SHA256,
        realm=REALM,
    )
    _, headers, _ = client.sign(f"https://{PUBLIC_HOST}{PATH}", "GET")
    return dict(headers)


@pytest.mark.parametrize("error_detail", ["code", "opaque"])
def test_a_proxy_that_ended_tls_is_named_in_the_audit_and_never_on_the_wire(
    tmp_path: Path, error_detail: str
) -> None:
    (tmp_path / "proxied_app.py").write_text(APP)
    audit = tmp_path / "audit.jsonl"
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "proxied_app:app", "--port", str(port)]
    # uvicorn's proxy-header middleware, trusting another proxy than the one that calls it.
    command += ["--proxy-headers", "--forwarded-allow-ips", "10.9.9.9", "--no-access-log"]
    env = {
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "AUDIT_FILE": str(audit),
        "ERROR_DETAIL": error_detail,
        "TBA_GUARD_BUILD": "pure",
    }
    with running_server(command, tmp_path / "uvicorn.log", port=port, env=env) as server:
        headers = signed_for_public_url()
        headers |= {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}
        response = httpx.get(f"{server.base}{PATH}", headers=headers, timeout=10)

    assert response.status_code == 401
    [record] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["code"] == "InvalidSignature"  # the verdict, whatever would verify
    if error_detail == "opaque":
        # Re-signing would make a bad signature cost more than an unknown key: not tried.
        assert "would verify" not in record["detail"]
    else:
        assert record["detail"].startswith(
            f"the signature would verify as https://{PUBLIC_HOST}/app/site/hosting/restlet.nl, "
            f"not as http://{PUBLIC_HOST}/app/site/hosting/restlet.nl"
        )
        assert "set public_url" in record["detail"]
        assert "trusted_proxies" in record["detail"]
    wire = response.text + "".join(f"{n}: {v}\n" for n, v in response.headers.items())
    assert "would verify" not in wire
    assert "public_url" not in wire
    if error_detail == "opaque":
        assert response.json()["error"]["code"] == "INVALID_LOGIN_ATTEMPT"
    else:
        assert response.json()["error"]["code"] == "InvalidSignature"


def serve_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **kw: Any
) -> list[str]:
    """`tba-guard serve`'s start-up warnings, with uvicorn's run replaced (nothing listens)."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setenv("TBA_GUARD_CONFIG", "restored after the test")
    monkeypatch.setenv("WEB_CONCURRENCY", "restored after the test")
    text = CLI_CONFIG.format(methods='["HMAC-SHA256"]', store="memory") + kw.get("extra", "")
    config = write_config(tmp_path, text=text)
    assert main(["serve", "--config", str(config), "--host", kw["host"], "--port", "8123"]) == 0
    return [line for line in capsys.readouterr().err.splitlines() if "public_url nor" in line]


def test_serve_warns_once_when_it_listens_beyond_loopback_with_no_public_url_or_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [warning] = [
        w
        for w in serve_warnings(tmp_path, monkeypatch, capsys, host="0.0.0.0")
        if "trusted_proxies set" in w
    ]
    assert "listening on 0.0.0.0 with neither public_url nor trusted_proxies set" in warning


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("127.0.0.1", ""),
        ("0.0.0.0", '\n[request]\ntrusted_proxies = ["10.0.0.5"]\n'),
        ("0.0.0.0", '\n[request]\npublic_url = "https://api.example.com"\n'),
    ],
)
def test_serve_says_nothing_of_proxies_on_loopback_or_with_public_url_or_proxies_set(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
    extra: str,
) -> None:
    warnings = serve_warnings(tmp_path, monkeypatch, capsys, host=host, extra=extra)
    assert not [w for w in warnings if "trusted_proxies set" in w]
