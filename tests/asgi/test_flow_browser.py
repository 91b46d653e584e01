"""The authorization flow in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright) signs in on the consent page and clicks Allow or Deny, against a uvicorn process.

Chromium runs with its profile and its HOME in a temporary folder, removed after each test:
it writes crash reports and a dconf cache under HOME, whatever profile it is given.
Where Chromium is missing these tests skip with the reason; `.ci/run` installs it and
requires them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.support import (
    ACCESS_TOKEN_PATH,
    ALICE,
    AUTHORIZE_PATH,
    FLOW_KEY,
    FLOW_SECRET,
    HEX64,
    REALM,
    REQUEST_TOKEN_PATH,
    FlowServer,
    assert_error,
    free_port,
    oauth_header,
    oauth_session,
    query_of,
    server_config,
)
from tests.support.environment import require_chromium

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowServer]:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/tba/callback"
    config = server_config(tmp_path_factory.mktemp("flow") / "flow.toml", callback)
    with FlowServer(config, port) as running:
        yield running


def browser_environment(home: Path) -> dict[str, str | float | bool]:
    """This process's environment, with HOME and the XDG folders Chromium writes to in `home`."""
    inside = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_STATE_HOME": home / ".local" / "state",
    }
    return {**os.environ, **{name: str(path) for name, path in inside.items()}}


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    """A fresh Chromium profile per test, so no cookie carries over."""
    chromium = require_chromium()
    # Not tmp_path: pytest keeps those, and a profile is megabytes.
    with (
        tempfile.TemporaryDirectory(prefix="tba-guard-chromium-") as folder,
        sync_playwright() as playwright,
    ):
        home = Path(folder) / "home"
        home.mkdir()
        context = playwright.chromium.launch_persistent_context(
            str(Path(folder) / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            env=browser_environment(home),
        )
        try:
            yield context
        finally:
            context.close()


def sign_in(page: Page, authorization_url: str) -> None:
    page.goto(authorization_url)
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill('input[name="name"]', ALICE.name)
    page.fill('input[name="password"]', ALICE.password)
    page.click('button:has-text("Sign in")')
    assert page.locator("h1").inner_text() == "Authorize Order sync"


def test_browser_signs_in_clicks_allow_and_the_issued_token_works(
    server: FlowServer, browser: BrowserContext
) -> None:
    callback = f"{server.base}/tba/callback"
    client = oauth_session(callback_uri=callback)
    client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[REALM])
    page = browser.new_page()
    sign_in(page, client.authorization_url(server.base + AUTHORIZE_PATH, state="fromBrowser1"))
    page.select_option('select[name="role"]', "1000")
    page.click('button[value="allow"]')
    page.wait_for_url(f"{callback}?**")
    assert page.locator("h1").inner_text() == "Callback received"
    assert HEX64.fullmatch(page.locator("#oauth_verifier").inner_text())
    assert page.locator("#company").inner_text() == REALM
    assert page.locator("#entity").inner_text() == ALICE.entity
    assert page.locator("#role").inner_text() == "1000"
    assert page.locator("#state").inner_text() == "fromBrowser1"

    client.parse_authorization_response(page.url)
    issued = client.fetch_access_token(server.base + ACCESS_TOKEN_PATH)
    api = oauth_session(
        resource_owner_key=issued["oauth_token"],
        resource_owner_secret=issued["oauth_token_secret"],
        realm=REALM,
    )
    response = api.get(server.base + "/app/site/hosting/restlet.nl?script=7&deploy=1")
    assert response.status_code == 200, response.text
    assert response.json()["entity"] == ALICE.entity
    assert response.json()["role"] == "1000"


def test_browser_clicks_deny_and_the_exchange_is_invalid_verifier(
    server: FlowServer, browser: BrowserContext
) -> None:
    callback = f"{server.base}/tba/callback"
    client = oauth_session(callback_uri=callback)
    fetched = client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[REALM])
    page = browser.new_page()
    sign_in(page, client.authorization_url(server.base + AUTHORIZE_PATH))
    page.click('button[value="deny"]')
    page.wait_for_url(f"{callback}?**")
    received = query_of(page.url)
    assert received["oauth_token"] == fetched["oauth_token"]
    assert received["oauth_verifier"] == ""
    assert page.locator("#oauth_verifier").inner_text() == ""

    # requests-oauthlib refuses to send an empty verifier; send what the callback received.
    url = server.base + ACCESS_TOKEN_PATH
    authorization = oauth_header(
        "POST",
        url,
        consumer_key=FLOW_KEY,
        consumer_secret=FLOW_SECRET,
        token=fetched["oauth_token"],
        token_secret=fetched["oauth_token_secret"],
        extra={"oauth_verifier": received["oauth_verifier"]},
        timestamp=int(time.time()),
    )
    response = requests.post(url, headers={"Authorization": authorization}, timeout=10)
    assert_error(response, "InvalidVerifier", 401, "verifier_invalid")
