"""Metrics scraped over HTTP from a real `tba-guard serve` process (the tree under test, through
`PYTHONPATH`): the counts equal the requests sent, the cap folds into `other`, several workers
count together in prometheus-client's multiprocess mode, and a missing extra is one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.support import ROOT, SHARED_REDIS_URL, Server, free_port, oauth_header, running_server
from tests.tools.test_missing_extras import assert_one_line, run_without

REALM = "7654321"
RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"
NAMES = ("alpha", "beta", "gamma")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config_text(*, cap: int, stores: str = "", tracing: bool = False) -> str:
    integrations = "".join(
        f'[[integrations]]\nconsumer_key = "ck-{n}"\nconsumer_secret = "cs-{n}-consumer-secret"\n'
        f'[[tokens]]\ntoken_id = "tk-{n}"\ntoken_secret = "ts-{n}-token-secret"\n'
        f'consumer_key = "ck-{n}"\n'
        for n in NAMES
    )
    return (
        f'[guard]\nrealm = "{REALM}"\nsignature_methods = ["HMAC-SHA256"]\n{stores}\n'
        f'[metrics]\nmetrics_path = "/metrics"\nmetrics_integration_cap = {cap}\n'
        f"tracing = {'true' if tracing else 'false'}\n{integrations}"
    )


@contextmanager
def served(
    tmp_path: Path, text: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Server]:
    config = tmp_path / "tba.toml"
    config.write_text(text)
    port = free_port()
    command = [sys.executable, "-m", "tba_guard.tools.cli", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    environment = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    log = tmp_path / "serve.log"
    with running_server(command, log, port=port, env=environment, workers=workers) as server:
        yield server


def get(server: Server, name: str | None, **bent: str) -> int:
    """A GET of the RESTlet on a connection of its own, signed with oauthlib for `name`."""
    url = server.base + RESTLET
    headers = {}
    if name is not None:
        values: dict[str, Any] = {
            "consumer_key": f"ck-{name}",
            "consumer_secret": f"cs-{name}-consumer-secret",
            "token": f"tk-{name}",
            "token_secret": f"ts-{name}-token-secret",
            **bent,
        }
        header = oauth_header("GET", url, realm=REALM, timestamp=int(time.time()), **values)
        headers["Authorization"] = header
    return httpx.get(url, headers=headers, timeout=10).status_code


def scrape(server: Server) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{server.base}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def requests_by_labels(samples: Samples) -> dict[tuple[str, str, str], float]:
    """`tba_guard_requests_total` as (outcome, code, integration) -> count, scheme tba."""
    found: dict[tuple[str, str, str], float] = {}
    for (name, labels), value in samples.items():
        if name == "tba_guard_requests_total":
            label = dict(labels)
            assert label["scheme"] == "tba"
            found[label["outcome"], label["code"], label["integration"]] = value
    return found


def test_a_served_guard_counts_a_mixed_load_as_it_was_sent(tmp_path: Path) -> None:
    with served(tmp_path, config_text(cap=2)) as server:
        sent = [get(server, "alpha") for _ in range(4)]
        sent += [get(server, "beta") for _ in range(2)]
        sent += [get(server, "gamma")]  # the third integration, past the cap of 2
        sent += [get(server, "alpha", consumer_secret="wrong") for _ in range(3)]
        sent += [get(server, "gamma", token_secret="wrong")]
        sent += [get(server, "made-up") for _ in range(2)]
        sent += [get(server, None)]
        assert sent == [200] * 7 + [401] * 7
        samples = scrape(server)
    assert requests_by_labels(samples) == {
        ("accepted", "", "ck-alpha"): 4,
        ("accepted", "", "ck-beta"): 2,
        ("accepted", "", "other"): 1,
        ("rejected", "InvalidSignature", "ck-alpha"): 3,
        ("rejected", "InvalidSignature", "other"): 1,
        ("rejected", "UnknownIntegration", "other"): 2,
        ("rejected", "MissingRequiredParameter", ""): 1,
    }
    verifications = ("tba_guard_verification_seconds_count", frozenset({("scheme", "tba")}))
    assert samples[verifications] == len(sent)


def test_workers_in_multiprocess_mode_are_counted_together(
    tmp_path: Path, redis_prefix: str
) -> None:
    stores = (
        f'replay_store = "{SHARED_REDIS_URL}"\nreplay_store_key_prefix = "{redis_prefix}"\n'
        f'token_store = "{SHARED_REDIS_URL}"\ntoken_store_key_prefix = "{redis_prefix}flow:"\n'
        'session_secret = "metrics-test-session-secret-0123456789"\n'
    )
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    connections = 32  # a connection each, spread by the kernel: all on one worker once in 2**31
    with served(tmp_path, config_text(cap=10, stores=stores), workers=2, env=env) as server:
        assert [get(server, "alpha") for _ in range(connections)] == [200] * connections
        assert get(server, "beta", consumer_secret="wrong") == 401
        first, second = scrape(server), scrape(server)
    for samples in (first, second):  # whichever worker answers, it shows all of them
        assert requests_by_labels(samples) == {
            ("accepted", "", "ck-alpha"): connections,
            ("rejected", "InvalidSignature", "other"): 1,
        }
    # Both workers counted: each writes its own file of counters (prometheus-client's naming).
    assert len(list(directory.glob("counter_*.db"))) == 2


def test_serve_with_tracing_and_no_opentelemetry_names_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(config_text(cap=2, tracing=True))
    command = ["serve", "--config", str(config), "--port", str(free_port())]
    done = run_without(("opentelemetry",), *command, cwd=tmp_path)
    expected = (
        "tba-guard serve: error: tracing = true needs the tracing extra: "
        "pip install 'tba-guard[tracing]'"
    )
    assert_one_line(done, expected)


def test_serve_with_metrics_and_no_prometheus_client_names_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(config_text(cap=2))
    command = ["serve", "--config", str(config), "--port", str(free_port())]
    done = run_without(("prometheus_client",), *command, cwd=tmp_path)
    expected = (
        'tba-guard serve: error: metrics_path = "/metrics" needs the metrics extra: '
        "pip install 'tba-guard[metrics]'"
    )
    assert_one_line(done, expected)
