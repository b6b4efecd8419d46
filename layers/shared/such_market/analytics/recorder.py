"""The container's traffic aggregate: recorded in memory on every response, flushed now and then.

``Recorder.observe`` runs on every cache-fronted response, HITs included, and costs a few microseconds:
no I/O, only in-memory counters keyed by (minute, endpoint family, outcome) and a histogram bucket.
``flush_if_due`` writes the aggregate to Valkey in ONE pipelined call (``analytics.store.write``) at most
every ``FLUSH_INTERVAL_SECONDS``, after the response was computed, and prints the same figures as
CloudWatch EMF. Recording is best effort: a failed flush is logged and never fails a request; what it
could not write is kept for the next flush (at most ``MAX_PENDING_MINUTES`` minutes, oldest dropped first),
and while the cache front's circuit breaker is open no flush is tried. A container that is frozen or
killed loses at most the figures of its last interval.

A response of a collection route also counts its contract address (and, for a first NFT page, its page
size): one more dict increment, flushed in the same pipeline to the traffic sets the cache warmer reads
(``such_market.analytics.traffic``). The counts are kept raw (as requested) and normalized at flush time,
off the request path; traffic a failed flush could not write is dropped (the next windows have more).

EMF: the counts go through Powertools ``EphemeralMetrics`` (one document per endpoint family, dimension
``Endpoint``: ``Requests``, ``CacheHit``, ``CacheMiss``, ``CacheBypass``, ``CacheStale``); the latency
distribution is a ``Latency`` metric in milliseconds written as EMF ``Values``/``Counts`` (the histogram's
representative values and their counts), which Powertools cannot express, so CloudWatch computes true
percentiles (p99 alarms) from it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import orjson

from such_market.analytics import store, traffic
from such_market.analytics.histogram import bucket_of, value_of
from such_market.analytics.store import Cell, CellKey
from such_market.cache.keys import CacheKeys
from such_market.config import CacheSettings
from such_market.container import per_container
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient

FLUSH_INTERVAL_SECONDS: Final = 5.0
MAX_PENDING_MINUTES: Final = 15
OUTCOMES: Final = ("HIT", "MISS", "BYPASS", "STALE")
_OUTCOME_METRICS: Final = {"HIT": "CacheHit", "MISS": "CacheMiss", "BYPASS": "CacheBypass", "STALE": "CacheStale"}


class Recorder:
    """One container's aggregate for one cache (see the module doc). Thread-safe."""

    def __init__(
        self,
        *,
        client: Callable[[], CacheClient],
        keys: CacheKeys,
        flush_allowed: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
        emf_namespace: str | None = None,
        service: str = "such-market",
    ) -> None:
        self._client = client
        self._keys = keys
        self._flush_allowed = flush_allowed
        self._clock = clock
        self._cells: dict[CellKey, Cell] = {}
        self._events: dict[CellKey, int] = {}
        self._traffic: dict[traffic.TrafficKey, int] = {}
        self._lock = threading.Lock()
        self._last_flush = clock()
        self._emf_namespace = emf_namespace
        self._service = service

    # -- recording (hot path) -------------------------------------------------------------------------------
    def observe(self, family: str, outcome: str, seconds: float, subject: traffic.TrafficKey | None = None) -> None:
        """Count one response of ``family`` served as ``outcome`` in ``seconds``; ``subject`` is the
        (contract address, first-page size or ``None``) of a collection route's answer, as requested."""
        microseconds = seconds * 1_000_000
        bucket = bucket_of(microseconds)
        key = (int(self._clock() // 60), family, outcome)
        with self._lock:
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = Cell()
            cell.requests += 1
            cell.total_us += int(microseconds)
            cell.histogram[bucket] = cell.histogram.get(bucket, 0) + 1
            if subject is not None:
                self._traffic[subject] = self._traffic.get(subject, 0) + 1

    def count_event(self, consumer: str, outcome: str) -> None:
        """Count one event handled by ``consumer`` (``processed`` or ``failed``)."""
        key = (int(self._clock() // 60), consumer, outcome)
        with self._lock:
            self._events[key] = self._events.get(key, 0) + 1

    # -- flushing ---------------------------------------------------------------------------------------------
    def flush_if_due(self) -> None:
        """``flush()`` when the last one is at least ``FLUSH_INTERVAL_SECONDS`` old."""
        if self._clock() - self._last_flush >= FLUSH_INTERVAL_SECONDS:
            self.flush()

    def flush(self) -> bool:
        """Write what was recorded since the last flush (one pipelined call) and print it as EMF.
        Returns whether it was written; never raises."""
        self._last_flush = self._clock()
        with self._lock:
            cells, self._cells = self._cells, {}
            events, self._events = self._events, {}
            counted, self._traffic = self._traffic, {}
        if not cells and not events:
            return True
        self._emit_emf(cells)
        if self._flush_allowed():
            try:
                window = traffic.window_of(self._clock())
                store.write(self._client(), self._keys, cells, events, traffic=(window, counted))
                return True
            except Exception as error:  # best effort: analytics never fail a request
                logger.warning(
                    "analytics flush failed; kept for the next one", extra={"error_type": type(error).__name__}
                )
        self._keep(cells, events)
        return False

    def _keep(self, cells: dict[CellKey, Cell], events: dict[CellKey, int]) -> None:
        oldest = int(self._clock() // 60) - MAX_PENDING_MINUTES
        with self._lock:
            for key, cell in cells.items():
                if key[0] > oldest:
                    self._cells.setdefault(key, Cell()).add(cell)
            for key, count in events.items():
                if key[0] > oldest:
                    self._events[key] = self._events.get(key, 0) + count

    # -- CloudWatch EMF ---------------------------------------------------------------------------------------
    def _emit_emf(self, cells: dict[CellKey, Cell]) -> None:
        if self._emf_namespace is None or not cells:
            return
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        by_family: dict[str, dict[str, Cell]] = {}
        totals: dict[str, Cell] = {}
        for (_, name, outcome), cell in cells.items():
            by_family.setdefault(name, {}).setdefault(outcome, Cell()).add(cell)
            totals.setdefault(outcome, Cell()).add(cell)
        # Counts per endpoint (dimensions service, Endpoint) and for the whole service (service): CloudWatch
        # matches dimensions exactly, and the alarms watch the whole service.
        groups: list[tuple[str | None, dict[str, Cell]]] = [*sorted(by_family.items()), (None, totals)]
        for family, outcomes in groups:
            metrics = EphemeralMetrics(namespace=self._emf_namespace, service=self._service)
            if family is not None:
                metrics.add_dimension(name="Endpoint", value=family)
            requests = sum(cell.requests for cell in outcomes.values())
            metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=requests)
            for outcome, cell in outcomes.items():
                name = _OUTCOME_METRICS.get(outcome, outcome)
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=cell.requests)
            metrics.flush_metrics()
            if family is not None:
                histogram: dict[int, int] = {}
                for cell in outcomes.values():
                    for bucket, count in cell.histogram.items():
                        histogram[bucket] = histogram.get(bucket, 0) + count
                self._emit_latency(family, histogram)

    def _emit_latency(self, family: str, histogram: dict[int, int]) -> None:
        ordered = sorted(histogram.items())
        for start in range(0, len(ordered), 100):  # EMF takes at most 100 values per metric
            chunk = ordered[start : start + 100]
            document = {
                "_aws": {
                    "Timestamp": int(self._clock() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self._emf_namespace,
                            "Dimensions": [["service", "Endpoint"], ["service"]],
                            "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}],
                        }
                    ],
                },
                "service": self._service,
                "Endpoint": family,
                "Latency": {
                    "Values": [round(value_of(bucket) / 1000, 4) for bucket, _ in chunk],
                    "Counts": [count for _, count in chunk],
                },
            }
            sys.stdout.write(orjson.dumps(document).decode() + "\n")


@per_container(close=lambda recorder: recorder.flush())
def recorder_for(settings: CacheSettings) -> Recorder:
    """The container's recorder for the cache of ``settings`` (flushed when the container is closed)."""
    from such_market.cache.store import get_cache

    front = get_cache(settings)
    return Recorder(
        client=lambda: front.client,
        keys=front.keys,
        flush_allowed=lambda: front.breaker.closed,
        emf_namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or None,
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "such-market",
    )


def emit_gauges(values: dict[str, tuple[float, str]]) -> None:
    """Print ``{name: (value, unit)}`` as one EMF document (dimension ``service``) through Powertools, when
    ``POWERTOOLS_METRICS_NAMESPACE`` is set (the outbox relay's backlog, watched by an alarm)."""
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
    if not namespace:
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics

    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "such-market"
    metrics = EphemeralMetrics(namespace=namespace, service=service)
    for name, (value, unit) in values.items():
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
