"""Cache analytics on a real Valkey: recording, windows merged across containers, alerts, reset, restart."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator

import pytest
import redis

from local.services import EmbeddedValkey
from such_market.analytics import store
from such_market.analytics.histogram import RELATIVE_ACCURACY
from such_market.analytics.recorder import Recorder
from such_market.analytics.report import Pipeline, Thresholds, metrics_report, reset, resolve_alert
from such_market.cache.keys import CacheKeys
from such_market.errors import NotFoundError

KEYS = CacheKeys("such-market")
NOW = 1_800_000_000.0  # a fixed minute boundary plus nothing: 2027-01-15T08:00:00Z
QUIET = Pipeline(outbox_backlog=0, oldest_unpublished_age_seconds=0.0, dlq_depth=0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorder(client: redis.Redis, clock: Clock) -> Recorder:
    return Recorder(client=lambda: client, keys=KEYS, clock=clock)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def report(client: redis.Redis, window: str = "15m", *, now: float = NOW, pipeline: Pipeline = QUIET) -> dict:
    return metrics_report(client=client, keys=KEYS, window=window, pipeline=pipeline, now=now)  # type: ignore[arg-type]


def test_windows_merge_what_two_containers_recorded(cache: redis.Redis) -> None:
    # Given two containers serving the same endpoint, and one request half an hour earlier
    clock = Clock(NOW)
    first, second = recorder(cache, clock), recorder(cache, clock)
    rng = random.Random(1)
    latencies = [rng.lognormvariate(-8, 0.6) for _ in range(3000)]  # seconds: ~0.3 ms median
    for index, seconds in enumerate(latencies):
        (first if index % 2 else second).observe("metadata", "HIT" if index % 10 else "MISS", seconds)
    first.observe("traits", "BYPASS", 0.002)
    assert first.flush()
    assert second.flush()
    clock.now = NOW - 1800
    early = recorder(cache, clock)
    early.observe("metadata", "HIT", 0.001)
    assert early.flush()
    # When the windows are read
    fifteen, hour = report(cache, "15m"), report(cache, "1h")
    # Then the 15-minute window holds both containers' requests, and the hour also the earlier one
    overview = fifteen["analytics"]["overview"]
    assert overview["totalRequests"] == 3001
    assert hour["analytics"]["overview"]["totalRequests"] == 3002
    metadata = fifteen["analytics"]["breakdown"]["byEndpoint"]["metadata"]
    assert (metadata["hits"], metadata["misses"], metadata["requests"]) == (2700, 300, 3000)
    assert metadata["hitRate"] == 0.9
    assert fifteen["analytics"]["breakdown"]["byEndpoint"]["traits"]["bypass"] == 1
    assert overview["hitRate"] == 0.9  # BYPASS is neither a hit nor a miss
    # And the percentiles are within the histogram's accuracy of the exact ones
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        truth = exact([s * 1000 for s in latencies], q)
        assert abs(metadata[name] - truth) <= (RELATIVE_ACCURACY * truth + 0.0005), name
    assert len(fifteen["analytics"]["breakdown"]["byTimeRange"]) == 15
    assert len(hour["analytics"]["breakdown"]["byTimeRange"]) == 12
    assert sum(point["requests"] for point in hour["analytics"]["breakdown"]["byTimeRange"]) == 3002


def test_an_alert_opens_dedupes_resolves_by_hand_and_clears_by_itself(cache: redis.Redis) -> None:
    clock = Clock(NOW)
    traffic = recorder(cache, clock)
    # Given a hit rate of 50 % over 200 requests (the threshold is 80 %)
    for index in range(200):
        traffic.observe("nfts-page", "HIT" if index % 2 else "MISS", 0.001)
    traffic.flush()
    # When the metrics are read twice
    first = report(cache)["analytics"]["alerts"]
    clock.now += 30
    again = report(cache, now=NOW + 30)["analytics"]["alerts"]
    # Then one alert is open, seen twice, first seen at the first read
    assert [alert["id"] for alert in first] == ["hit_rate_low"]
    assert len(again) == 1
    assert (again[0]["count"], again[0]["firstSeen"]) == (2, first[0]["firstSeen"])
    assert again[0]["value"] == 0.5
    # When an operator resolves it, it is not reported while the condition holds
    with pytest.raises(NotFoundError):
        resolve_alert(client=cache, keys=KEYS, alert_id="no_such_alert")
    resolved = resolve_alert(client=cache, keys=KEYS, alert_id="hit_rate_low")
    assert resolved["alert"]["status"] == "resolved"
    assert report(cache, now=NOW + 60)["analytics"]["alerts"] == []
    # When the condition clears (many hits), the alert is gone; when it returns, a new one opens
    for _ in range(2000):
        traffic.observe("nfts-page", "HIT", 0.001)
    traffic.flush()
    cleared = report(cache, now=NOW + 90)
    assert cleared["analytics"]["alerts"] == []
    assert cleared["health"]["status"] == "healthy"
    assert cache.hlen(KEYS.durable("analytics", "alerts")) == 0
    for _ in range(10_000):
        traffic.observe("nfts-page", "MISS", 0.001)
    traffic.flush()
    returned = report(cache, now=NOW + 120)["analytics"]["alerts"]
    assert [(alert["id"], alert["count"], alert["status"]) for alert in returned] == [("hit_rate_low", 1, "open")]
    assert returned[0]["firstSeen"] != first[0]["firstSeen"]


def test_pipeline_alerts_are_critical_and_drive_health(cache: redis.Redis) -> None:
    troubled = Pipeline(outbox_backlog=3, oldest_unpublished_age_seconds=900.0, dlq_depth=2)
    answer = report(cache, pipeline=troubled)
    assert [alert["id"] for alert in answer["analytics"]["alerts"]] == ["dlq_not_empty", "outbox_stale"]
    assert answer["health"]["status"] == "unhealthy"
    assert any("dead-letter" in advice for advice in answer["health"]["recommendations"])
    assert answer["analytics"]["eventPipeline"] == {
        "outboxBacklog": 3,
        "oldestUnpublishedAgeSeconds": 900.0,
        "eventsProcessed": 0,
        "eventsFailed": 0,
        "dlqDepth": 2,
    }


def test_too_few_requests_are_not_judged(cache: redis.Redis) -> None:
    traffic = recorder(cache, Clock(NOW))
    for _ in range(Thresholds().min_requests - 1):
        traffic.observe("owner", "MISS", 1.0)
    traffic.flush()
    assert report(cache)["analytics"]["alerts"] == []


def test_reset_forgets_figures_and_alerts_but_nothing_else(cache: redis.Redis) -> None:
    traffic = recorder(cache, Clock(NOW))
    for _ in range(Thresholds().min_requests):
        traffic.observe("metadata", "MISS", 0.001)
    traffic.count_event("invalidator", "processed")
    traffic.flush()
    cache.set("such-market:durable:locks:refresh:x", b"held")
    cache.set("such-market:collections:{0xabc}:metadata", b"cached")
    assert report(cache)["analytics"]["alerts"]
    answer = reset(client=cache, keys=KEYS, now=NOW)
    assert answer["keysDeleted"] == 2  # the minute hash and the alerts
    after = report(cache)
    assert after["analytics"]["overview"]["totalRequests"] == 0
    assert after["analytics"]["eventPipeline"]["eventsProcessed"] == 0
    assert cache.exists("such-market:durable:locks:refresh:x", "such-market:collections:{0xabc}:metadata") == 2


@pytest.fixture
def persistent_valkey() -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(extra_args=("--appendonly", "yes", "--appendfsync", "always")).start()
    try:
        yield server
    finally:
        server.stop()


def test_recording_survives_a_valkey_restart_without_failing(persistent_valkey: EmbeddedValkey) -> None:
    client = redis.Redis.from_url(persistent_valkey.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    clock = Clock(NOW)
    traffic = recorder(client, clock)
    for _ in range(5):
        traffic.observe("profile", "HIT", 0.0005)
    assert traffic.flush()
    # When the server goes away, recording and flushing go on without raising
    assert persistent_valkey.process is not None
    persistent_valkey.process.terminate()
    persistent_valkey.process.wait(10)
    for _ in range(7):
        traffic.observe("profile", "MISS", 0.003)
    assert traffic.flush() is False
    # And when it is back (same port, same data directory), the next flush writes what was kept
    persistent_valkey.process = None
    persistent_valkey.start()
    clock.now += 10
    assert traffic.flush() is True
    profile = report(client)["analytics"]["breakdown"]["byEndpoint"]["profile"]
    assert (profile["hits"], profile["misses"]) == (5, 7)
    client.close()


# -- issue 15, item 8: figures nobody can skew ----------------------------------------------------------


def test_the_hit_rate_is_over_cacheable_requests_and_judged_from_a_minimum_of_them(cache: redis.Redis) -> None:
    clock = Clock(NOW)
    traffic = recorder(cache, clock)
    minimum = Thresholds().min_requests
    # Given many never-cached answers (BYPASS) and fewer cacheable ones than the minimum, all misses
    for _ in range(1000):
        traffic.observe("nfts-page", "BYPASS", 0.001)
    for _ in range(minimum - 2):
        traffic.observe("nfts-page", "MISS", 0.001)
    traffic.observe("nfts-page", "STALE", 0.001)
    traffic.flush()
    # Then the rate is over the cacheable ones only (STALE is a miss: an expired value not refreshed),
    # and it is not judged: the BYPASS answers count in totalRequests, not towards the minimum
    answer = report(cache)
    overview, page = answer["analytics"]["overview"], answer["analytics"]["breakdown"]["byEndpoint"]["nfts-page"]
    assert (overview["totalRequests"], page["cacheable"], overview["hitRate"]) == (1000 + minimum - 1, minimum - 1, 0.0)
    assert answer["analytics"]["alerts"] == []
    # When one more cacheable request comes, the minimum is reached and the low hit rate is an alert
    traffic.observe("nfts-page", "HIT", 0.001)
    traffic.flush()
    answer = report(cache, now=NOW + 1)
    assert answer["analytics"]["overview"]["hitRate"] == round(1 / minimum, 4)
    assert [alert["id"] for alert in answer["analytics"]["alerts"]] == ["hit_rate_low"]


def test_a_minute_of_analytics_is_bounded_whatever_the_latencies(cache: redis.Redis) -> None:
    # Given every outcome of one endpoint, each with latencies spread log-uniformly over 1 µs .. 100 s
    # (a million-fold spread: ~1,800 distinct 1 % buckets each), from 3 containers flushing 4 times each
    clock = Clock(NOW)
    rng = random.Random(15)
    containers = [recorder(cache, clock) for _ in range(3)]
    latencies: dict[str, list[float]] = {outcome: [] for outcome in ("HIT", "MISS", "BYPASS", "STALE")}
    for _ in range(4):
        for container in containers:
            for outcome, seen in latencies.items():
                for _ in range(2000):
                    seconds = 10 ** rng.uniform(-6, 2)
                    seen.append(seconds)
                    container.observe("nfts-page", outcome, seconds)
            assert container.flush()
    # Then the minute's hash holds 3 fields per outcome, within the stated bound in bytes
    name = store.minute_key(KEYS, int(NOW // 60))
    assert cache.hlen(name) == 3 * 4
    used = cache.memory_usage(name)
    assert used is not None
    assert used <= 4 * store.MAX_CELL_MEMORY_BYTES, used
    for field, value in cache.hgetall(name).items():
        if field.startswith(b"b|"):
            assert len(value) <= store.MAX_HISTOGRAM_BYTES
    # And nothing is lost: every request is counted, and the upper percentiles are still exact to 1 %
    figures = report(cache)["analytics"]["breakdown"]["byEndpoint"]["nfts-page"]
    assert figures["requests"] == 4 * 3 * 4 * 2000
    everything = [s * 1000 for seen in latencies.values() for s in seen]
    for label, q in (("p95", 0.95), ("p99", 0.99)):
        truth = exact(everything, q)
        assert abs(figures[label] - truth) <= RELATIVE_ACCURACY * truth, label


# -- issue 15, item 9: figures written within a bound, EMF per invocation -----------------------------------


def test_pending_figures_are_due_one_interval_after_the_first_whatever_comes_after(cache: redis.Redis) -> None:
    clock = Clock(NOW)
    lines: list[str] = []
    traffic = Recorder(client=lambda: cache, keys=KEYS, clock=clock, emf_namespace="SuchMarket", emit=lines.append)
    # Given two requests 3 s apart, and nothing after them
    traffic.observe("traits", "HIT", 0.0002)
    clock.now += 3
    traffic.observe("traits", "MISS", 0.004)
    # Then each printed its own EMF line at once (CloudWatch has both, whatever happens next)
    documents = [json.loads(line) for line in lines]
    assert [(d["Endpoint"], d.get("CacheHit"), d.get("CacheMiss"), d["Latency"]) for d in documents] == [
        ("traits", 1, None, 0.2),
        ("traits", None, 1, 4.0),
    ]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    # And the figures are due for Valkey one interval after the first of them, not after the last flush
    clock.now = NOW + traffic.flush_interval - 0.001
    assert not traffic.due()
    clock.now = NOW + traffic.flush_interval
    assert traffic.due()
    traffic.flush_if_due()
    assert report(cache, now=clock.now)["analytics"]["overview"]["totalRequests"] == 2
    assert not traffic.due()
    assert len(lines) == 2  # a flush prints nothing more: CloudWatch counts each invocation once


def test_the_flusher_writes_behind_without_a_request(cache: redis.Redis) -> None:
    # Given a recorder writing behind with a short interval, and three requests
    minute = int(time.time() // 60)
    traffic = Recorder(client=lambda: cache, keys=KEYS, flush_interval=0.05, write_behind=True)
    for _ in range(3):
        traffic.observe("owner", "HIT", 0.0003)
    # When nothing else happens, Then its flusher thread writes them (polled: no timing is asserted)
    names = [store.minute_key(KEYS, m) for m in (minute - 1, minute, minute + 1)]  # a minute may turn

    def written() -> int:
        return sum(int(cache.hget(name, "n|owner|HIT") or 0) for name in names)

    for _ in range(200):
        if written() == 3:
            break
        time.sleep(0.025)
    assert written() == 3
    traffic.close()


def test_a_response_recorded_while_a_flush_folds_is_written_by_the_next_flush(cache: redis.Redis) -> None:
    # Given a deferred recorder (as on Lambda) whose flush is folding one response when another is recorded
    clock = Clock(NOW)
    arrivals: list[str] = []

    def emit(text: str) -> None:
        if not arrivals:  # the fold has taken the first response; a second request records now
            arrivals.append(text)
            container.observe("metadata", "MISS", 0.002)

    container = Recorder(
        client=lambda: cache, keys=KEYS, clock=clock, emf_namespace="SuchMarket", emit=emit, defer_emf=True
    )
    container.observe("metadata", "HIT", 0.001)
    assert container.flush()

    # When its interval passes
    clock.now = NOW + container.flush_interval
    assert container.due()  # the second response armed the next flush: it is not left waiting for a third
    container.flush_if_due()

    # Then both responses are in Valkey
    metadata = report(cache, now=NOW + 60)["analytics"]["breakdown"]["byEndpoint"]["metadata"]
    assert (metadata["hits"], metadata["misses"]) == (1, 1)


def test_a_response_folded_while_a_flush_swaps_the_counters_arms_the_next_flush(cache: redis.Redis) -> None:
    # Given a recorder that prints each EMF line at once (Lambda without the extension), whose request thread
    # has popped its observation when a flush swaps the counters (stood in for by a flush inside the pop)
    clock = Clock(NOW)
    container = Recorder(client=lambda: cache, keys=KEYS, clock=clock, defer_emf=False)
    observed = container._observed

    class SwappedDuringThePop(type(observed)):  # type: ignore[misc]
        def popleft(self) -> object:
            item = super().popleft()
            container.flush()  # finds nothing folded yet, resets what is pending
            return item

    container._observed = SwappedDuringThePop()
    # When the response is recorded
    container.observe("metadata", "HIT", 0.001)
    container._observed = observed
    # Then its figure arms the next flush, which writes it
    clock.now = NOW + container.flush_interval
    assert container.due()
    container.flush_if_due()
    metadata = report(cache, now=NOW + 60)["analytics"]["breakdown"]["byEndpoint"]["metadata"]
    assert metadata["hits"] == 1
