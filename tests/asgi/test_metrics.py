"""Prometheus metrics and OpenTelemetry spans, in process: the counters after a mixed load, the
integration cap, governance's refusals, the endpoint, one registry per guard, the spans (recorded
by opentelemetry-sdk in memory) and the extras' missing packages."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tba_guard import Guard, GuardSettings, Integration, TBAGuardMiddleware, Token
from tba_guard.asgi.flow import TBAFlow
from tba_guard.asgi.metrics import OTHER, Observability
from tba_guard.asgi.metrics import _needs as needs
from tba_guard.core.audit import AuditEvent, record
from tba_guard.core.settings import SettingsError
from tests.support import BASE_URL, NOW, Clock, FailingStore, echo_app, make_settings, oauth_header
from tests.support.oauth2 import (
    RSA_CERTIFICATE_ID,
    TOKEN_PATH,
    assertion,
    oauth2_settings,
    rsa_key,
    token_form,
)

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"
#: Three integrations, each with a token: `ck-<name>` / `tk-<name>`.
NAMES = ("alpha", "beta", "gamma")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def three_integrations(**overrides: Any) -> GuardSettings:
    return make_settings(
        integrations=[Integration(f"ck-{n}", f"cs-{n}-consumer-secret") for n in NAMES],
        tokens=[Token(f"tk-{n}", f"ts-{n}-token-secret", f"ck-{n}") for n in NAMES],
        **overrides,
    )


def signed(name: str, **bent: Any) -> dict[str, str]:
    """A request of integration `name`, signed with oauthlib; `bent` bends the header."""
    values: dict[str, Any] = {
        "consumer_key": f"ck-{name}",
        "consumer_secret": f"cs-{name}-consumer-secret",
        "token": f"tk-{name}",
        "token_secret": f"ts-{name}-token-secret",
    }
    return {"Authorization": oauth_header("GET", URL, **{**values, **bent})}


def client(guard: Guard) -> TestClient:
    return TestClient(TBAGuardMiddleware(echo_app(), guard=guard), base_url=BASE_URL)


def parse(text: str) -> Samples:
    """Every sample of an exposition, read by prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(http: TestClient, path: str = "/metrics") -> Samples:
    answer = http.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


def count(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, outcome: str, code: str, integration: str) -> float:
    labels = {"outcome": outcome, "code": code, "scheme": "tba", "integration": integration}
    return count(samples, "tba_guard_requests_total", **labels)


def guard_with_metrics(cap: int = 100, **overrides: Any) -> Guard:
    settings = three_integrations(metrics_path="/metrics", metrics_integration_cap=cap)
    return Guard(settings, clock=Clock(), **overrides)


# --- the counters ---------------------------------------------------------------------------


def test_each_decision_is_counted_by_outcome_code_scheme_and_integration() -> None:
    http = client(guard_with_metrics())
    for _ in range(3):
        assert http.get(URL, headers=signed("alpha")).status_code == 200
    assert http.get(URL, headers=signed("beta")).status_code == 200
    replayed = signed("beta")
    assert http.get(URL, headers=replayed).status_code == 200
    assert http.get(URL, headers=replayed).status_code == 401
    for _ in range(2):
        bad = signed("alpha", consumer_secret="not-the-secret")
        assert http.get(URL, headers=bad).status_code == 401
    assert http.get(URL, headers=signed("nobody")).status_code == 401
    assert http.get(URL).status_code == 401
    samples = scrape(http)
    assert requests(samples, "accepted", "", "ck-alpha") == 3
    assert requests(samples, "accepted", "", "ck-beta") == 2
    assert requests(samples, "rejected", "NonceUsed", "ck-beta") == 1
    assert requests(samples, "rejected", "InvalidSignature", "ck-alpha") == 2
    assert requests(samples, "rejected", "UnknownIntegration", OTHER) == 1
    assert requests(samples, "rejected", "MissingRequiredParameter", "") == 1
    total = sum(v for (name, _), v in samples.items() if name == "tba_guard_requests_total")
    assert total == 10
    # Every one of them was a verification, timed once.
    assert count(samples, "tba_guard_verification_seconds_count", scheme="tba") == 10
    assert count(samples, "tba_guard_verification_seconds_bucket", scheme="tba", le="+Inf") == 10
    assert not any(name == "tba_guard_operational_errors_total" for name, _ in samples)


def test_a_store_outage_counts_as_an_operational_error_by_code() -> None:
    http = client(guard_with_metrics(replay_store=FailingStore()))
    for _ in range(2):
        assert http.get(URL, headers=signed("alpha")).status_code == 503
    samples = scrape(http)
    code = "ReplayStoreUnavailable"
    assert count(samples, "tba_guard_operational_errors_total", code=code) == 2
    # The replay check comes before the lookup: the key is unverified, so `other`.
    assert requests(samples, "rejected", code, OTHER) == 2


@pytest.mark.parametrize("code", ["SSS_REQUEST_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED"])
def test_a_governance_refusal_counts_as_a_governance_rejection_only(code: str) -> None:
    guard = guard_with_metrics(cap=1)
    http = client(guard)
    # Governance's refusal reaches the audit hooks as this event, after the signature verified.
    event = AuditEvent("rejected", code, "ck-gamma", "tk-gamma", "", "GET", "/", "", NOW)
    record(event, guard.audit_hooks)
    record(event, guard.audit_hooks)
    samples = scrape(http)
    assert count(samples, "tba_guard_governance_rejections_total", integration="ck-gamma") == 2
    # Its verification was counted as accepted already: the decisions add up to the requests.
    assert requests(samples, "rejected", code, "ck-gamma") == 0
    # A verified integration: it took the one label of the cap.
    assert http.get(URL, headers=signed("alpha")).status_code == 200
    assert requests(scrape(http), "accepted", "", OTHER) == 1


# --- the integration label's cap ------------------------------------------------------------


def test_integrations_past_the_cap_are_counted_as_other() -> None:
    http = client(guard_with_metrics(cap=2))
    for name in NAMES:
        assert http.get(URL, headers=signed(name)).status_code == 200
    bad = signed("alpha", consumer_secret="not-the-secret")
    assert http.get(URL, headers=bad).status_code == 401
    bad = signed("gamma", consumer_secret="not-the-secret")
    assert http.get(URL, headers=bad).status_code == 401
    samples = scrape(http)
    assert requests(samples, "accepted", "", "ck-alpha") == 1
    assert requests(samples, "accepted", "", "ck-beta") == 1
    assert requests(samples, "accepted", "", OTHER) == 1
    assert requests(samples, "rejected", "InvalidSignature", "ck-alpha") == 1
    assert requests(samples, "rejected", "InvalidSignature", OTHER) == 1
    integrations = {dict(labels).get("integration") for _, labels in samples}
    assert integrations - {None} == {"ck-alpha", "ck-beta", OTHER}


def test_made_up_consumer_keys_never_use_the_cap_up() -> None:
    http = client(guard_with_metrics(cap=1))
    for n in range(5):
        assert http.get(URL, headers=signed(f"made-up-{n}")).status_code == 401
    assert http.get(URL, headers=signed("beta")).status_code == 200
    samples = scrape(http)
    assert requests(samples, "rejected", "UnknownIntegration", OTHER) == 5
    assert requests(samples, "accepted", "", "ck-beta") == 1


# --- one registry per guard, and the endpoint -----------------------------------------------


def test_two_guards_count_apart_and_never_in_the_global_registry() -> None:
    first, second = client(guard_with_metrics()), client(guard_with_metrics())
    assert first.get(URL, headers=signed("alpha")).status_code == 200
    assert requests(scrape(first), "accepted", "", "ck-alpha") == 1
    assert requests(scrape(second), "accepted", "", "ck-alpha") == 0
    assert REGISTRY.get_sample_value("tba_guard_requests_total") is None
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("tba_guard")]


def test_middlewares_sharing_a_guard_count_each_decision_once() -> None:
    guard = guard_with_metrics()
    first, second = client(guard), client(guard)
    assert len(guard.audit_hooks) == 1
    assert first.get(URL, headers=signed("alpha")).status_code == 200
    assert requests(scrape(second), "accepted", "", "ck-alpha") == 1


def test_the_flow_counts_on_its_guard_and_serves_the_metrics() -> None:
    http = TestClient(TBAFlow(echo_app(), guard=guard_with_metrics(), workers=1), base_url=BASE_URL)
    assert http.get(URL, headers=signed("alpha")).status_code == 200
    assert requests(scrape(http), "accepted", "", "ck-alpha") == 1


def test_a_flow_over_an_observed_guard_shares_its_metrics() -> None:
    guard = guard_with_metrics()
    plain = client(guard)
    flow = TBAFlow(echo_app(), guard=guard, workers=1)
    assert flow.guard.observer is guard.observer
    assert TestClient(flow, base_url=BASE_URL).get(URL, headers=signed("beta")).status_code == 200
    samples = scrape(plain)
    assert requests(samples, "accepted", "", "ck-beta") == 1
    assert count(samples, "tba_guard_verification_seconds_count", scheme="tba") == 1


@pytest.mark.parametrize("method", ["POST", "HEAD", "DELETE"])
def test_the_endpoint_answers_get_alone(method: str) -> None:
    answer = client(guard_with_metrics()).request(method, "/metrics")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"


def test_the_endpoint_needs_no_credentials_and_is_not_a_decision() -> None:
    http = client(guard_with_metrics())
    scrape(http)
    samples = scrape(http)
    assert not any(name == "tba_guard_requests_total" for name, _ in samples)
    assert count(samples, "tba_guard_verification_seconds_count", scheme="tba") == 0


def test_the_endpoint_is_at_metrics_path_alone() -> None:
    http = client(guard_with_metrics())
    assert http.get("/metrics/").status_code == 401  # guarded as any other path
    assert http.get("/other").status_code == 401


def test_without_metrics_path_nothing_is_kept_or_served() -> None:
    guard = Guard(three_integrations(), clock=Clock())
    http = client(guard)
    assert http.get("/metrics").status_code == 401
    assert guard.observer is None
    assert guard.audit_hooks == ()
    assert http.get(URL, headers=signed("alpha")).status_code == 200


# --- tracing ----------------------------------------------------------------------------------

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans recorded through the global tracer provider (set once per process, as the
    OpenTelemetry API allows)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_span_per_verification_under_the_callers_span(
    spans: InMemorySpanExporter,
) -> None:
    guard = Guard(three_integrations(tracing=True), clock=Clock())
    app = TBAGuardMiddleware(echo_app(), guard=guard)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        with trace.get_tracer("test").start_as_current_span("request") as parent:
            assert (await http.get(URL, headers=signed("alpha"))).status_code == 200
            bad = signed("beta", consumer_secret="not-the-secret")
            assert (await http.get(URL, headers=bad)).status_code == 401
        assert (await http.get("/metrics")).status_code == 401  # tracing alone serves nothing
    verifies = [s for s in spans.get_finished_spans() if s.name == "tba_guard.verify"]
    assert [attributes(s) for s in verifies] == [
        {
            "tba_guard.outcome": "accepted",
            "tba_guard.code": "",
            "tba_guard.scheme": "tba",
            "tba_guard.integration": "ck-alpha",
        },
        {
            "tba_guard.outcome": "rejected",
            "tba_guard.code": "InvalidSignature",
            "tba_guard.scheme": "tba",
            "tba_guard.integration": "ck-beta",
        },
        {
            "tba_guard.outcome": "rejected",
            "tba_guard.code": "MissingRequiredParameter",
            "tba_guard.scheme": "tba",
            "tba_guard.integration": "",
        },
    ]
    context = parent.get_span_context()
    assert [s.parent.span_id if s.parent else None for s in verifies[:2]] == [context.span_id] * 2
    assert all((s.start_time or 0) <= (s.end_time or -1) for s in verifies)


def test_tracing_is_off_by_default(spans: InMemorySpanExporter) -> None:
    http = client(Guard(three_integrations(), clock=Clock()))
    assert http.get(URL, headers=signed("alpha")).status_code == 200
    assert spans.get_finished_spans() == ()


def test_metrics_and_tracing_together_share_one_observer(spans: InMemorySpanExporter) -> None:
    guard = Guard(three_integrations(metrics_path="/m", tracing=True), clock=Clock())
    http = client(guard)
    assert http.get(URL, headers=signed("gamma")).status_code == 200
    assert isinstance(guard.observer, Observability)
    assert requests(scrape(http, "/m"), "accepted", "", "ck-gamma") == 1
    [span] = spans.get_finished_spans()
    assert attributes(span)["tba_guard.integration"] == "ck-gamma"


# --- the extras -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "package", "expected"),
    [
        (
            {"metrics_path": "/metrics"},
            "prometheus_client",
            "metrics_path = \"/metrics\" needs the metrics extra: pip install 'tba-guard[metrics]'",
        ),
        (
            {"tracing": True},
            "opentelemetry",
            "tracing = true needs the tracing extra: pip install 'tba-guard[tracing]'",
        ),
    ],
    ids=["metrics", "tracing"],
)
def test_a_missing_extra_is_a_settings_error_naming_it(
    setting: dict[str, Any], package: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules: the import system's own refusal, as for a package not installed.
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)
    guard = Guard(three_integrations(**setting), clock=Clock())
    with pytest.raises(SettingsError) as caught:
        TBAGuardMiddleware(echo_app(), guard=guard)
    assert str(caught.value) == expected
    assert caught.value.__suppress_context__
    assert guard.observer is None


def test_an_import_error_of_another_package_passes_unchanged() -> None:
    broken = ImportError("a broken installation", name="prometheus_client_extension")
    with pytest.raises(ImportError) as caught, needs("metrics_path", "metrics"):
        raise broken
    assert caught.value is broken


# --- OAuth 2.0 --------------------------------------------------------------------------------


def test_bearer_tokens_and_the_token_grant_count_under_the_oauth2_scheme() -> None:
    clock = Clock()
    guard = Guard(oauth2_settings(metrics_path="/metrics"), clock=clock)
    http = TestClient(TBAFlow(echo_app(), guard=guard, workers=1), base_url=BASE_URL)
    grant = assertion(rsa_key(), RSA_CERTIFICATE_ID, now=clock.now)
    answer = http.post(TOKEN_PATH, data=token_form(grant))
    assert answer.status_code == 200, answer.text
    bearer = {"authorization": f"Bearer {answer.json()['access_token']}"}
    assert http.get(URL, headers=bearer).status_code == 200
    assert http.get(URL, headers={"authorization": "Bearer not.a.token"}).status_code == 401
    samples = scrape(http)
    found = {
        (labels["outcome"], labels["code"], labels["integration"]): value
        for (name, frozen), value in samples.items()
        if name == "tba_guard_requests_total"
        for labels in [dict(frozen)]
        if labels["scheme"] == "oauth2"
    }
    # The grant and the bearer request; a token that is no token names no integration.
    assert found == {
        ("accepted", "", "ck-order-sync"): 2,
        ("rejected", "InvalidBearerToken", ""): 1,
    }
    assert count(samples, "tba_guard_verification_seconds_count", scheme="oauth2") == 3
    assert count(samples, "tba_guard_verification_seconds_count", scheme="tba") == 0
