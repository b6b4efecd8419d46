"""The container's traffic aggregate: recorded in memory on every response, written behind, and printed
as CloudWatch EMF per invocation.

``Recorder.observe`` runs on every cache-fronted response, HITs included, and costs about a microsecond:
it appends the observation (family, outcome, latency, time, traffic subject) to a deque — no round trip, no
lock, no formatting. ``_fold`` then adds it to in-memory counters keyed by (minute, endpoint family,
outcome) with a histogram bucket, and prints one EMF line of that invocation's own figures (``Requests``,
its outcome's ``CacheHit``/``CacheMiss``/``CacheBypass``/``CacheStale`` and ``Latency``, dimensions
``service`` + ``Endpoint`` and ``service``), built from a prepared template, with the invocation's own
timestamp. On Lambda stdout is the log stream CloudWatch reads; the fold runs after the response in the
post-invoke extension (``such_market.post_invoke``), before the container may be frozen or recycled, so
every invocation reaches CloudWatch (a print, not a round trip, and not on the client's time: a write to
the log pipe costs a hit more than everything else it records). Without the extension on Lambda each
observation is folded and printed before the handler returns; off Lambda the flusher folds
(``emf_deferred``), and at most ``MAX_PENDING_OBSERVATIONS`` wait.

The figures reach Valkey (and so ``GET /api/admin/cache/metrics``) write-behind: the first figure recorded
after a flush arms a daemon flusher thread, which writes everything pending in ONE pipelined call
(``analytics.store.write``) ``FLUSH_INTERVAL_SECONDS`` later, whether or not another request comes. So a
figure is in Valkey within that bound plus one write while the process runs, and a request never waits
for the write. On Lambda the process is frozen between invocations: a thread cannot run then, so the
figures of a container's last interval before a freeze are written when it thaws (at its next
invocation) — or never, if the platform recycles it frozen; CloudWatch has them all the same (EMF).

Recording is best effort: a failed flush is logged and never fails a request; what it could not write is
kept for the next flush (at most ``MAX_PENDING_MINUTES`` minutes, oldest dropped first), and while the
cache front's circuit breaker is open no flush is tried.

A response of a collection route also counts its contract address (and, for a first NFT page, its page
size): one more dict increment, flushed in the same pipeline to the traffic sets the cache warmer reads
(``such_market.analytics.traffic``). The counts are kept raw (as requested) and normalized at flush time,
off the request path; traffic a failed flush could not write is dropped (the next windows have more).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import orjson

from such_market.analytics import store, traffic
from such_market.analytics.histogram import bucket_of
from such_market.analytics.store import Cell, CellKey
from such_market.cache.keys import CacheKeys
from such_market.config import CacheSettings
from such_market.container import per_container
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient

FLUSH_INTERVAL_SECONDS: Final = 5.0
"""How long a recorded figure waits at most before the flusher writes it (the endpoint's bound)."""
MAX_PENDING_MINUTES: Final = 15
MAX_PENDING_OBSERVATIONS: Final = 1000
"""Observations held back at most (deferred mode): the request that makes the next one folds them."""
OUTCOMES: Final = ("HIT", "MISS", "BYPASS", "STALE")
type Observation = tuple[str, str, float, float, traffic.TrafficKey | None]
"""One response as ``Recorder.observe`` holds it until folded: family, outcome, seconds, time, subject."""
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
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        write_behind: bool = False,
        emit: Callable[[str], object] | None = None,
        defer_emf: bool = False,
    ) -> None:
        self._client = client
        self._keys = keys
        self._flush_allowed = flush_allowed
        self._clock = clock
        self._cells: dict[CellKey, Cell] = {}
        self._events: dict[CellKey, int] = {}
        self._traffic: dict[traffic.TrafficKey, int] = {}
        self._lock = threading.Lock()
        self._pending_since: float | None = None
        """When the oldest figure not yet flushed was recorded (``None``: nothing pending)."""
        self.flush_interval = flush_interval
        self._write_behind = write_behind
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._emf_namespace = emf_namespace
        self._service = service
        self._emit = emit or _print
        self._emf_lines: dict[tuple[str, str], tuple[str, str]] = {}
        self._defer_emf = defer_emf
        self._observed: deque[Observation] = deque()
        """Observations not yet folded into the counters: (family, outcome, seconds, time, subject)."""

    # -- recording (hot path) -------------------------------------------------------------------------------
    def observe(self, family: str, outcome: str, seconds: float, subject: traffic.TrafficKey | None = None) -> None:
        """Count one response of ``family`` served as ``outcome`` in ``seconds``, and print it as EMF;
        ``subject`` is the (contract address, first-page size or ``None``) of a collection route's answer,
        as requested.

        On the request path this only appends the observation to a deque (atomic: no lock, no formatting);
        ``_fold`` adds it to the counters and makes its EMF line when the figures are written — after the
        response on Lambda, in the flusher elsewhere — or at once where EMF lines may not wait."""
        now = self._clock()
        observed = self._observed
        observed.append((family, outcome, seconds, now, subject))
        if self._pending_since is None:
            self._pending_since = now
            self._arm()
        if not self._defer_emf or len(observed) >= MAX_PENDING_OBSERVATIONS:
            self._fold()

    def _fold(self) -> None:
        """Add the observations made since the last fold to the counters, and print their EMF lines (one
        write). Safe beside ``observe`` and another fold: each observation is popped exactly once."""
        observed = self._observed
        taken: list[Observation] = []
        while True:
            try:
                taken.append(observed.popleft())
            except IndexError:
                break
        if not taken:
            return
        with self._lock:
            for family, outcome, seconds, now, subject in taken:
                microseconds = seconds * 1_000_000
                key = (int(now // 60), family, outcome)
                cell = self._cells.get(key)
                if cell is None:
                    cell = self._cells[key] = Cell()
                cell.requests += 1
                cell.total_us += int(microseconds)
                bucket = bucket_of(microseconds)
                cell.histogram[bucket] = cell.histogram.get(bucket, 0) + 1
                if subject is not None:
                    self._traffic[subject] = self._traffic.get(subject, 0) + 1
            # A flush may have swapped the counters between our pops and now, finding nothing pending:
            # what we just added must arm the next one rather than wait for another request.
            unarmed = self._pending_since is None
            if unarmed:
                self._pending_since = taken[0][3]
        if unarmed:
            self._arm()
        if self._emf_namespace is not None:
            self._emit(
                "".join([self._emf_line(family, outcome, seconds, now) for family, outcome, seconds, now, _ in taken])
            )

    def count_event(self, consumer: str, outcome: str) -> None:
        """Count one event handled by ``consumer`` (``processed`` or ``failed``)."""
        now = self._clock()
        key = (int(now // 60), consumer, outcome)
        with self._lock:
            self._events[key] = self._events.get(key, 0) + 1
            armed = self._pending_since is None
            if armed:
                self._pending_since = now
        if armed:
            self._arm()

    # -- flushing ---------------------------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether pending figures are ``flush_interval`` old (the flusher's cue)."""
        since = self._pending_since
        return since is not None and self._clock() - since >= self.flush_interval

    def flush_if_due(self) -> None:
        """``flush()`` when pending figures are ``flush_interval`` old."""
        if self.due():
            self.flush()

    def flush(self) -> bool:
        """Fold the observations made since the last flush (their EMF lines are printed), then write what was
        recorded (one pipelined call). Returns whether it was written; never raises."""
        self._fold()
        with self._lock:
            cells, self._cells = self._cells, {}
            events, self._events = self._events, {}
            counted, self._traffic = self._traffic, {}
            self._pending_since = None
            if self._observed:  # made since the fold, by a request that found the figures pending: arm again
                self._pending_since = self._clock()
        if not cells and not events:
            return True
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

    def close(self) -> None:
        """Stop the flusher and write what is pending (the container ends)."""
        self._closed.set()
        self._wake.set()
        self.flush()

    def _keep(self, cells: dict[CellKey, Cell], events: dict[CellKey, int]) -> None:
        now = self._clock()
        oldest = int(now // 60) - MAX_PENDING_MINUTES
        with self._lock:
            for key, cell in cells.items():
                if key[0] > oldest:
                    self._cells.setdefault(key, Cell()).add(cell)
            for key, count in events.items():
                if key[0] > oldest:
                    self._events[key] = self._events.get(key, 0) + count
            if (self._cells or self._events) and self._pending_since is None:
                self._pending_since = now  # retried one interval later
        self._arm()

    def _arm(self) -> None:
        """Wake the flusher (started on first use, so a cold start pays nothing for it)."""
        if not self._write_behind or self._closed.is_set():
            return
        if self._flusher is None:
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_behind, name="analytics-flusher", daemon=True)
                    self._flusher.start()
        self._wake.set()

    def _flush_behind(self) -> None:
        """The flusher: waits for pending figures, then until they are due, then writes them."""
        while not self._closed.is_set():
            since = self._pending_since
            if since is None:
                self._wake.wait()
                self._wake.clear()
                continue
            left = since + self.flush_interval - self._clock()
            if left > 0:
                self._closed.wait(left)
                continue
            self.flush()

    # -- CloudWatch EMF ---------------------------------------------------------------------------------------
    def _emf_line(self, family: str, outcome: str, seconds: float, now: float) -> str:
        """One EMF document of an invocation's figures, from a template prepared once per (family, outcome):
        only the timestamp and the latency are written per line."""
        template = self._emf_lines.get((family, outcome))
        if template is None:
            template = self._emf_lines[(family, outcome)] = self._emf_template(family, outcome)
        head, tail = template
        return f"{head}{int(now * 1000)}{tail}{seconds * 1000:.3f}}}\n"

    def _emf_template(self, family: str, outcome: str) -> tuple[str, str]:
        metric = _OUTCOME_METRICS.get(outcome, outcome)
        document = {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._emf_namespace,
                        # Per endpoint and for the whole service: CloudWatch matches dimensions exactly,
                        # and the alarms watch the whole service.
                        "Dimensions": [["service", "Endpoint"], ["service"]],
                        "Metrics": [
                            {"Name": "Requests", "Unit": "Count"},
                            {"Name": metric, "Unit": "Count"},
                            {"Name": "Latency", "Unit": "Milliseconds"},
                        ],
                    }
                ],
            },
            "service": self._service,
            "Endpoint": family,
            "Requests": 1,
            metric: 1,
            "Latency": 0,
        }
        text = orjson.dumps(document).decode()
        head, _, rest = text.partition('"Timestamp":0')
        middle, _, _ = rest.rpartition('"Latency":0}')
        return f'{head}"Timestamp":', f'{middle}"Latency":'


def _print(line: str) -> None:
    sys.stdout.write(line)  # looked up per call: the runtime (or a test) may replace stdout


@per_container(close=lambda recorder: recorder.close())
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
        flush_interval=FLUSH_INTERVAL_SECONDS,
        write_behind=True,
        defer_emf=emf_deferred(),
    )


def emf_deferred() -> bool:
    """Whether an invocation's EMF line may wait for the write after its response: on Lambda when the
    post-invoke extension writes before every freeze (the client then never waits for the print, a
    write to the log pipe), and off Lambda (``make dev``, the bench), where the flusher prints it within
    its interval. On Lambda without the extension every line is printed before the handler returns."""
    from such_market import post_invoke

    return post_invoke.enabled() is not None or not os.environ.get("AWS_LAMBDA_FUNCTION_NAME")


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
