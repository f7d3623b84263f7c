"""Prometheus metrics through OpenTelemetry: one MeterProvider, and one registry, per app.

Names and labels are the specification's. The exporter appends ``_total`` to counters, so they
are created without it; neither ``target_info`` nor ``otel_scope_*`` labels are exported. Views
give the two duration histograms their buckets in seconds.

The counts that move on every request or backend call (``http_requests``,
``http_requests_in_progress``, ``cache_hits``, ``cache_misses``, ``dependency_requests``) are
observable instruments over dicts kept here, because a synchronous OTel instrument cleans and
hashes its attributes on every call and a request would pay that four times instead of once (for
the duration histogram, which has no observable form); the two gauges are observable because the
OTel API has no public synchronous gauge. Record from the event-loop thread: the counts take no
lock.

Several uvicorn workers: each process has its own registry and its /metrics shows that process
only. prometheus_client's multiprocess mode is not reachable through OTel, and a scrape of a port
shared by workers lands on one of them at random. Scrape per process instead: run single-worker
processes on their own ports, each one a Prometheus target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from colima_ref.ports.services import SERVICE_NAMES

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The media type of `Metrics.render`'s output (the text format ``generate_latest`` writes)."""

BreakerState = Literal["closed", "half_open", "open"]
Outcome = Literal["success", "error", "timeout", "rejected", "cancelled"]

REQUEST_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# A cached backend call takes well under 5 ms, so the dependency histogram starts lower.
DEPENDENCY_SECONDS = (0.001, 0.0025, *REQUEST_SECONDS)

_BREAKER_STATE_VALUES: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}

Key = tuple[str, ...]


class _Counts:
    """A value per tuple of label values, which an observable instrument reports when scraped."""

    __slots__ = ("_labels", "_values")

    def __init__(
        self, create: Callable[..., object], name: str, description: str, *labels: str
    ) -> None:
        self._labels = labels
        self._values: dict[Key, float] = {}
        create(name, callbacks=[self._observe], description=description)

    def add(self, key: Key, amount: float = 1) -> None:
        self._values[key] = self._values.get(key, 0) + amount

    def set(self, key: Key, value: float) -> None:
        self._values[key] = value

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        labels = self._labels
        return [
            Observation(value, dict(zip(labels, key, strict=True)))
            for key, value in list(self._values.items())
        ]


class RouteMetrics:
    """The HTTP series of one (method, endpoint), prepared once so a request only adds numbers."""

    __slots__ = ("_attributes", "_duration", "_in_progress", "_key", "_requests")

    def __init__(
        self,
        method: str,
        endpoint: str,
        *,
        requests: _Counts,
        in_progress: _Counts,
        duration: Histogram,
    ) -> None:
        self._key = (method, endpoint)
        self._attributes = {"method": method, "endpoint": endpoint}
        self._requests = requests
        self._in_progress = in_progress
        self._duration = duration

    def started(self) -> None:
        """Count one more request in progress."""
        self._in_progress.add(self._key, 1)

    def stopped(self) -> None:
        """Count a request that `started` as no longer in progress."""
        self._in_progress.add(self._key, -1)

    def finished(self, status_code: int, seconds: float) -> None:
        """Count a request as answered, with its status and duration."""
        self._requests.add((*self._key, str(status_code)))
        self._duration.record(seconds, self._attributes)


class Metrics:
    """Every metric family of the service, on a registry of its own.

    Create one per app (two apps in one process do not share series). ``endpoint`` arguments
    must be route templates (``/examples/cache/{key}``), never raw paths, or series multiply.
    The circuit-breaker families start at 0 for each of ``services`` so dashboards see them;
    ``cache_invalidations_total`` starts as one sample without labels at 0.
    """

    def __init__(self, *, name: str, version: str, services: Iterable[str] = SERVICE_NAMES) -> None:
        self._registry = CollectorRegistry()
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=self._registry
        )
        # No atexit hook: it would keep every provider (one per app, many in tests) alive.
        provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.get_empty(),
            views=[
                View(
                    instrument_name="http_request_duration_seconds",
                    aggregation=ExplicitBucketHistogramAggregation(REQUEST_SECONDS),
                ),
                View(
                    instrument_name="dependency_request_duration_seconds",
                    aggregation=ExplicitBucketHistogramAggregation(DEPENDENCY_SECONDS),
                ),
            ],
            shutdown_on_exit=False,
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        meter = provider.get_meter("colima_ref")
        self._routes: dict[tuple[str, str], RouteMetrics] = {}

        self._request_duration = meter.create_histogram(
            "http_request_duration_seconds", description="HTTP request latency"
        )
        self._dependency_duration = meter.create_histogram(
            "dependency_request_duration_seconds",
            description="Duration of calls to backing services",
        )
        self._requests = _Counts(
            meter.create_observable_counter,
            "http_requests",
            "Total HTTP requests",
            "method",
            "endpoint",
            "status",
        )
        self._in_progress = _Counts(
            meter.create_observable_up_down_counter,
            "http_requests_in_progress",
            "HTTP requests in progress",
            "method",
            "endpoint",
        )
        self._cache_hits = _Counts(
            meter.create_observable_counter, "cache_hits", "Cache hits", "endpoint"
        )
        self._cache_misses = _Counts(
            meter.create_observable_counter, "cache_misses", "Cache misses", "endpoint"
        )
        self._dependency_requests = _Counts(
            meter.create_observable_counter,
            "dependency_requests",
            "Calls to backing services by outcome",
            "service",
            "operation",
            "outcome",
        )
        self._errors = meter.create_counter("http_errors", description="HTTP errors by type")
        self._cache_invalidations = meter.create_counter(
            "cache_invalidations", description="Cache invalidations"
        )
        # Shown from start-up as one unlabelled 0: patterns are whatever a caller invalidates, so
        # there is no list to start each at 0 (as the breakers have their services), and without
        # a sample the family would be missing, not 0, until the first credential rotation.
        self._cache_invalidations.add(0)
        self._rate_limited = meter.create_counter(
            "rate_limit_exceeded", description="Requests refused by rate limit"
        )
        self._rate_limit_storage_errors = meter.create_counter(
            "rate_limit_storage_errors",
            description="Requests let through unlimited because the rate-limit storage failed",
        )
        self._rate_limit_storage_errors.add(0)
        self._breaker_transitions = {
            "open": meter.create_counter(
                "circuit_breaker_opened", description="Times circuit opened"
            ),
            "half_open": meter.create_counter(
                "circuit_breaker_half_open", description="Times circuit entered half-open state"
            ),
            "closed": meter.create_counter(
                "circuit_breaker_closed", description="Times circuit recovered"
            ),
        }
        self._breaker_failures = meter.create_counter(
            "circuit_breaker_failures", description="Total failures per service"
        )
        self._breaker_state = _Counts(
            meter.create_observable_gauge,
            "circuit_breaker_state",
            "Circuit state: 0 closed, 1 half-open, 2 open",
            "service",
        )
        _Counts(
            meter.create_observable_gauge, "app_info", "Application metadata", "version", "name"
        ).add((version, name))
        self._tls_expiry = _Counts(
            meter.create_observable_gauge,
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate new HTTPS handshakes get expires (Unix time)",
        )

        for service in services:
            for counter in (*self._breaker_transitions.values(), self._breaker_failures):
                counter.add(0, {"service": service})
            self._breaker_state.set((service,), 0)

    def render(self) -> bytes:
        """The registry in Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self._registry)

    def http_route(self, method: str, endpoint: str) -> RouteMetrics:
        """The series of requests to ``endpoint`` (a route template) with ``method``."""
        key = (method, endpoint)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = RouteMetrics(
                method,
                endpoint,
                requests=self._requests,
                in_progress=self._in_progress,
                duration=self._request_duration,
            )
        return route

    def http_error(self, error_type: str, status_code: int) -> None:
        """Count an error response; ``error_type`` is the error body's ``error`` or the
        exception class."""
        self._errors.add(1, {"error_type": error_type, "status_code": str(status_code)})

    def cache_hit(self, endpoint: str) -> None:
        """Count a response served from the response cache."""
        self._cache_hits.add((endpoint,))

    def cache_miss(self, endpoint: str) -> None:
        """Count a response the cache did not have."""
        self._cache_misses.add((endpoint,))

    def cache_invalidated(self, pattern: str) -> None:
        """Count one invalidation of the keys matching ``pattern`` (``cache:*``)."""
        self._cache_invalidations.add(1, {"pattern": pattern})

    def breaker_failure(self, service: str) -> None:
        """Count a failure the circuit breaker of ``service`` saw."""
        self._breaker_failures.add(1, {"service": service})

    def breaker_changed(self, service: str, state: BreakerState) -> None:
        """Record that the breaker of ``service`` entered ``state``: counts the transition and
        sets ``circuit_breaker_state`` (0 closed, 1 half-open, 2 open)."""
        self._breaker_transitions[state].add(1, {"service": service})
        self._breaker_state.set((service,), _BREAKER_STATE_VALUES[state])

    def rate_limit_exceeded(self, endpoint: str) -> None:
        """Count a request refused with 429 on ``endpoint`` (a route template)."""
        self._rate_limited.add(1, {"endpoint": endpoint})

    def rate_limit_storage_error(self) -> None:
        """Count a request let through unlimited because the rate-limit storage failed."""
        self._rate_limit_storage_errors.add(1)

    def tls_certificate_expires(self, timestamp: float) -> None:
        """Record when the certificate the HTTPS listener now serves expires (Unix time)."""
        self._tls_expiry.set((), timestamp)

    def dependency_call(
        self, service: str, operation: str, outcome: Outcome, seconds: float
    ) -> None:
        """Record one call to a backing service (``postgres``, ``query``, ``success``, 0.002)."""
        self._dependency_requests.add((service, operation, outcome))
        self._dependency_duration.record(seconds, {"service": service, "operation": operation})
