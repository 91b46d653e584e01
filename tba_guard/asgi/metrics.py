"""Prometheus metrics and OpenTelemetry spans of the guard's decisions (docs/metrics.md).

`observe(guard)` turns on what the settings ask for: the counters, fed by an audit hook (every
decision reaches it, governance's refusals too), and the verification time and spans, fed by the
guard's `observer`. The middleware serves the metrics at `metrics_path`. prometheus-client and
opentelemetry-api (the `metrics` and `tracing` extras) are imported only when turned on, and
only here: the compiled modules never depend on them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from starlette.types import Receive, Scope, Send

from ..core.audit import AuditEvent
from ..core.errors import GOVERNANCE_CODES as GOVERNANCE_ERRORS
from ..core.errors import OPERATIONAL_CODES, ErrorCode
from ..core.settings import GuardSettings, SettingsError
from ..guard import Guard, Verifying

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Where prometheus-client's multiprocess mode keeps every worker's values (its own variable).
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: The integration label of consumer keys without one of their own.
OTHER: Final = "other"
#: Governance's refusals, as they reach the audit hooks: a RESTlet's, and REST's.
GOVERNANCE_CODES: Final = frozenset(code.value for code in GOVERNANCE_ERRORS)
#: Governance's decisions, after verification accepted the request (already counted).
_AFTER_VERIFICATION: Final = GOVERNANCE_CODES | {ErrorCode.GOVERNANCE_STORE_UNAVAILABLE.value}
_OPERATIONAL: Final = frozenset(code.value for code in OPERATIONAL_CODES)
#: Seconds: a verification in process takes tens of microseconds, one with a store round trip
#: a millisecond or more; Prometheus's default buckets start at 5 ms and would see neither.
VERIFICATION_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: Span attributes are cut as the audit log's fields are: a client chooses the consumer key.
_MAX_ATTRIBUTE = 128


@contextmanager
def _needs(what: str, extra: str) -> Iterator[None]:
    """A setting whose extra is missing: one line naming the `pip install`, as `needs_extra`
    says it for the stores, raised as the SettingsError it is (the setting asks for it)."""
    package = {"metrics": "prometheus_client", "tracing": "opentelemetry"}[extra]
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != package:
            raise
        raise SettingsError(
            f"{what} needs the {extra} extra: pip install 'tba-guard[{extra}]'"
        ) from None


class Integrations:
    """The integration label of each consumer key, at most `cap` of them. A key earns a label
    of its own only once the guard verified a request of it (accepted, or refused by
    governance, which comes after the signature), so that made-up keys cannot use the cap up;
    the rest count as `other`, and a request naming no key as ""."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.labelled: set[str] = set()

    def label(self, consumer_key: str, *, verified: bool) -> str:
        if not consumer_key or consumer_key in self.labelled:
            return consumer_key
        if verified and len(self.labelled) < self.cap:
            self.labelled.add(consumer_key)
            return consumer_key
        return OTHER


class PrometheusMetrics:
    """The guard's counters and histogram, in a registry of its own: two guards in a process
    count apart, and nothing lands in prometheus-client's global registry."""

    def __init__(self, settings: GuardSettings) -> None:
        with _needs(f'metrics_path = "{settings.metrics_path}"', "metrics"):
            from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry = CollectorRegistry()
        self.integrations = Integrations(settings.metrics_integration_cap)
        self.requests = Counter(
            "tba_guard_requests",
            "Decisions of the guard: requests accepted and rejected.",
            ("outcome", "code", "scheme", "integration"),
            registry=registry,
        )
        self.verification_seconds = Histogram(
            "tba_guard_verification_seconds",
            "Time from the start of a verification to its verdict.",
            ("scheme",),
            buckets=VERIFICATION_BUCKETS,
            registry=registry,
        )
        self.operational_errors = Counter(
            "tba_guard_operational_errors",
            "Rejections that are the service's trouble, not the client's: stores unavailable, "
            "buffers full, bodies too large or too slow.",
            ("code",),
            registry=registry,
        )
        self.governance_rejections = Counter(
            "tba_guard_governance_rejections",
            "Requests governance refused: over the account's or the integration's limit.",
            ("integration",),
            registry=registry,
        )

    def audit(self, event: AuditEvent) -> None:
        """The audit hook: one decision counted."""
        governed = event.code in GOVERNANCE_CODES
        integration = self.integrations.label(
            event.consumer_key, verified=event.outcome == "accepted" or governed
        )
        if event.code not in _AFTER_VERIFICATION:  # its verification was counted already
            self.requests.labels(event.outcome, event.code, event.scheme, integration).inc()
        if event.code in _OPERATIONAL:
            self.operational_errors.labels(event.code).inc()
        if governed:
            self.governance_rejections.labels(integration).inc()

    def exposition(self) -> bytes:
        """The text exposition: this registry's values or, under prometheus-client's
        multiprocess mode, those of every process writing to its directory."""
        from prometheus_client import generate_latest

        registry: CollectorRegistry = self.registry
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class Tracing:
    """A span per verification ("tba_guard.verify"), through the application's tracer
    provider (the global one, which a no-op until the application sets its own)."""

    def __init__(self) -> None:
        with _needs("tracing = true", "tracing"):
            from opentelemetry import trace

        self.tracer = trace.get_tracer("tba_guard")

    def span(self, verifying: Verifying, seconds: float, end: int) -> None:
        """The span of a verification that ended at `end` (ns since the epoch) after `seconds`;
        it starts under the caller's current span (the server's, where it traces requests)."""
        error = verifying.error
        attributes = {
            "tba_guard.outcome": "accepted" if error is None else "rejected",
            "tba_guard.code": "" if error is None else error.code.value,
            "tba_guard.scheme": verifying.scheme.audit_name,
            "tba_guard.integration": consumer_key(verifying)[:_MAX_ATTRIBUTE],
        }
        span = self.tracer.start_span(
            "tba_guard.verify", start_time=end - int(seconds * 1e9), attributes=attributes
        )
        span.end(end_time=end)


def consumer_key(verifying: Verifying) -> str:
    """Who the request said it was: what its scheme found, else the OAuth header's key."""
    principal = verifying.request.principal
    if principal is not None:
        return principal[1]
    return verifying.request.oauth.get("oauth_consumer_key", "")


class Observability:
    """What the settings turned on for one guard: its observer (each verdict's time) and, with
    `metrics_path`, the metrics and their endpoint."""

    def __init__(self, settings: GuardSettings) -> None:
        self.path = settings.metrics_path
        self.metrics = PrometheusMetrics(settings) if self.path is not None else None
        self.tracing = Tracing() if settings.tracing else None

    def __call__(self, verifying: Verifying, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.verification_seconds.labels(verifying.scheme.audit_name).observe(seconds)
        if self.tracing is not None:
            self.tracing.span(verifying, seconds, time.time_ns())

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The metrics endpoint: GET only, the text exposition, no authentication (serve it on
        a private network: docs/metrics.md)."""
        if scope["method"] != "GET":
            await _answer(send, 405, b"method not allowed\n", [(b"allow", b"GET")])
            return
        assert self.metrics is not None  # served only where there are metrics
        from prometheus_client import CONTENT_TYPE_LATEST

        content_type = CONTENT_TYPE_LATEST.encode()
        await _answer(send, 200, self.metrics.exposition(), [(b"content-type", content_type)])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    if status != 200:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def observe(guard: Guard) -> Observability | None:
    """Turn on what the guard's settings ask for (None when neither metrics nor tracing):
    once per guard, however many middlewares share it."""
    if isinstance(guard.observer, Observability):
        return guard.observer
    settings = guard.settings
    if settings.metrics_path is None and not settings.tracing:
        return None
    observability = Observability(settings)
    if observability.metrics is not None:
        guard.audit_hooks = (*guard.audit_hooks, observability.metrics.audit)
    guard.observer = observability
    return observability
