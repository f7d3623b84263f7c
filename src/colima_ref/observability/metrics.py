"""Prometheus metrics through OpenTelemetry: one registry per app, every instrument made once.

Names and labels are the specification's. The exporter appends ``_total`` to counters, so they are
created without it. Neither ``target_info`` nor ``otel_scope_*`` labels are exported.

Cost: an OTel synchronous instrument cleans and hashes its attributes on every call, about 6 us
each (measured with SDK 1.45). So counters and gauges count into plain dicts keyed by label values,
and OTel observable instruments read those dicts when /metrics is scraped. OTel has no observable
histogram, so the two duration histograms count into plain buckets that a collector of their own
hands to the registry, as the same families OTel's exporter writes (same names, help, labels and
``le`` bounds), ahead of the exporter's. Record from the event-loop thread: the dicts take no lock.

Several uvicorn workers: each process has its own registry and its /metrics shows that process
only. prometheus_client's multiprocess mode is not reachable through OTel, and a scrape of a port
shared by workers lands on one of them at random. Scrape per process instead: run single-worker
processes on their own ports, each one a Prometheus target.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Literal

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily

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


class _Cells:
    """Values per tuple of label values, handed to an OTel observable instrument at scrape time."""

    __slots__ = ("_attributes", "_labels", "values")

    def __init__(self, *labels: str) -> None:
        self._labels = labels
        self.values: dict[Key, float] = {}
        self._attributes: dict[Key, dict[str, str]] = {}

    def add(self, key: Key, amount: float = 1) -> None:
        values = self.values
        if key in values:
            values[key] += amount
        else:
            self._attributes[key] = dict(zip(self._labels, key, strict=True))
            values[key] = amount

    def set(self, key: Key, value: float) -> None:
        if key not in self.values:
            self._attributes[key] = dict(zip(self._labels, key, strict=True))
        self.values[key] = value

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        attributes = self._attributes
        return [Observation(value, attributes[key]) for key, value in list(self.values.items())]


class _Buckets:
    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class _HistogramCells:
    """Bucket counts per tuple of label values, collected as one Prometheus histogram family."""

    __slots__ = ("_bounds", "_labels", "_name", "_order", "_text", "series")

    def __init__(self, name: str, text: str, bounds: Sequence[float], *labels: str) -> None:
        self._name = name
        self._text = text
        self._bounds = tuple(bounds)
        # OTel's exporter writes label names sorted; keys come in the caller's order.
        self._labels = sorted(labels)
        self._order = [labels.index(label) for label in self._labels]
        self.series: dict[Key, _Buckets] = {}

    def record(self, key: Key, value: float) -> None:
        buckets = self.series.get(key)
        if buckets is None:
            buckets = self.series[key] = _Buckets(len(self._bounds) + 1)
        # bisect_left: a value on a bound belongs to that bound's bucket (``le``), as in OTel.
        buckets.counts[bisect.bisect_left(self._bounds, value)] += 1
        buckets.total += value

    def collect(self) -> Iterable[HistogramMetricFamily]:
        if not self.series:
            return []
        family = HistogramMetricFamily(self._name, self._text, labels=self._labels)
        bounds = [str(bound) for bound in self._bounds] + ["+Inf"]
        for key, buckets in list(self.series.items()):
            cumulative, running = [], 0
            for bound, count in zip(bounds, buckets.counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric([key[i] for i in self._order], cumulative, sum_value=buckets.total)
        return [family]


class RouteMetrics:
    """The HTTP series of one (method, endpoint), prepared once so a request only adds numbers."""

    __slots__ = ("_duration", "_in_progress", "_key", "_requests", "_statuses")

    def __init__(
        self,
        method: str,
        endpoint: str,
        *,
        requests: _Cells,
        in_progress: _Cells,
        duration: _HistogramCells,
    ) -> None:
        self._key = (method, endpoint)
        self._requests = requests
        self._in_progress = in_progress
        self._duration = duration
        self._statuses: dict[int, Key] = {}

    def started(self) -> None:
        """Count one more request in progress."""
        self._in_progress.add(self._key, 1)

    def finished(self, status_code: int, seconds: float) -> None:
        """Count a request that `started` as done, with its status and duration."""
        self._in_progress.add(self._key, -1)
        key = self._statuses.get(status_code)
        if key is None:
            key = self._statuses[status_code] = (*self._key, str(status_code))
        self._requests.add(key)
        self._duration.record(self._key, seconds)


class Metrics:
    """Every metric family of the service, on a registry of its own.

    Create one per app (two apps in one process do not share series). ``endpoint`` arguments
    must be route templates (``/examples/cache/{key}``), never raw paths, or series multiply.
    The circuit-breaker families start at 0 for each of ``services`` so dashboards see them.
    """

    def __init__(self, *, name: str, version: str, services: Iterable[str] = SERVICE_NAMES) -> None:
        self.registry = CollectorRegistry()
        self._request_duration = _HistogramCells(
            "http_request_duration_seconds",
            "HTTP request latency",
            REQUEST_SECONDS,
            "method",
            "endpoint",
        )
        self._dependency_duration = _HistogramCells(
            "dependency_request_duration_seconds",
            "Duration of calls to backing services",
            DEPENDENCY_SECONDS,
            "service",
            "operation",
        )
        # Registered ahead of the OTel reader: its families come first, where OTel put them.
        for histogram in (self._request_duration, self._dependency_duration):
            self.registry.register(histogram)
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=self.registry
        )
        # No atexit hook: it would keep every provider (one per app, many in tests) alive.
        self._provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.get_empty(),
            shutdown_on_exit=False,
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        meter = self._provider.get_meter("colima_ref")
        self._routes: dict[tuple[str, str], RouteMetrics] = {}

        def observed(
            cells: _Cells, kind: Literal["counter", "updown", "gauge"], name: str, text: str
        ) -> _Cells:
            create = {
                "counter": meter.create_observable_counter,
                "updown": meter.create_observable_up_down_counter,
                "gauge": meter.create_observable_gauge,
            }[kind]
            create(name, callbacks=[cells.observe], description=text)
            return cells

        self._requests = observed(
            _Cells("method", "endpoint", "status"),
            "counter",
            "http_requests",
            "Total HTTP requests",
        )
        self._in_progress = observed(
            _Cells("method", "endpoint"),
            "updown",
            "http_requests_in_progress",
            "HTTP requests in progress",
        )
        self._errors = observed(
            _Cells("error_type", "status_code"), "counter", "http_errors", "HTTP errors by type"
        )
        self._cache_hits = observed(_Cells("endpoint"), "counter", "cache_hits", "Cache hits")
        self._cache_misses = observed(_Cells("endpoint"), "counter", "cache_misses", "Cache misses")
        self._cache_invalidations = observed(
            _Cells("pattern"), "counter", "cache_invalidations", "Cache invalidations"
        )
        self._breaker_transitions: dict[BreakerState, _Cells] = {
            "open": observed(
                _Cells("service"), "counter", "circuit_breaker_opened", "Times circuit opened"
            ),
            "half_open": observed(
                _Cells("service"),
                "counter",
                "circuit_breaker_half_open",
                "Times circuit entered half-open state",
            ),
            "closed": observed(
                _Cells("service"), "counter", "circuit_breaker_closed", "Times circuit recovered"
            ),
        }
        self._breaker_failures = observed(
            _Cells("service"), "counter", "circuit_breaker_failures", "Total failures per service"
        )
        self._breaker_state = observed(
            _Cells("service"),
            "gauge",
            "circuit_breaker_state",
            "Circuit state: 0 closed, 1 half-open, 2 open",
        )
        self._rate_limited = observed(
            _Cells("endpoint"), "counter", "rate_limit_exceeded", "Requests refused by rate limit"
        )
        self._rate_limit_storage_errors = observed(
            _Cells(),
            "counter",
            "rate_limit_storage_errors",
            "Requests let through unlimited because the rate-limit storage failed",
        )
        self._rate_limit_storage_errors.add((), 0)
        self._dependency_requests = observed(
            _Cells("service", "operation", "outcome"),
            "counter",
            "dependency_requests",
            "Calls to backing services by outcome",
        )
        observed(_Cells("version", "name"), "gauge", "app_info", "Application metadata").set(
            (version, name), 1
        )

        for service in services:
            key = (service,)
            for cells in (*self._breaker_transitions.values(), self._breaker_failures):
                cells.add(key, 0)
            self._breaker_state.set(key, 0)

    def render(self) -> bytes:
        """The registry in Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

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
        self._errors.add((error_type, str(status_code)))

    def cache_hit(self, endpoint: str) -> None:
        """Count a response served from the response cache."""
        self._cache_hits.add((endpoint,))

    def cache_miss(self, endpoint: str) -> None:
        """Count a response the cache did not have."""
        self._cache_misses.add((endpoint,))

    def cache_invalidated(self, pattern: str) -> None:
        """Count one invalidation of the keys matching ``pattern`` (``cache:*``)."""
        self._cache_invalidations.add((pattern,))

    def breaker_failure(self, service: str) -> None:
        """Count a failure the circuit breaker of ``service`` saw."""
        self._breaker_failures.add((service,))

    def breaker_changed(self, service: str, state: BreakerState) -> None:
        """Record that the breaker of ``service`` entered ``state``: counts the transition and
        sets ``circuit_breaker_state`` (0 closed, 1 half-open, 2 open)."""
        self._breaker_transitions[state].add((service,))
        self._breaker_state.set((service,), _BREAKER_STATE_VALUES[state])

    def rate_limit_exceeded(self, endpoint: str) -> None:
        """Count a request refused with 429 on ``endpoint`` (a route template)."""
        self._rate_limited.add((endpoint,))

    def rate_limit_storage_error(self) -> None:
        """Count a request let through unlimited because the rate-limit storage failed."""
        self._rate_limit_storage_errors.add(())

    def dependency_call(
        self, service: str, operation: str, outcome: Outcome, seconds: float
    ) -> None:
        """Record one call to a backing service (``postgres``, ``query``, ``success``, 0.002)."""
        self._dependency_requests.add((service, operation, outcome))
        self._dependency_duration.record((service, operation), seconds)
