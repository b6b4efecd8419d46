"""GET/POST /api/admin/cache/metrics through the local API: real traffic recorded by the read functions,
the admin check, bad input, and the dead-letter depth read from SQS (moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT
from such_market.container import close_all
from tests.conftest import ADMIN_TOKEN, MotoBus
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import Reply

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
METRICS = "/api/admin/cache/metrics"
SEEDED = "0x" + "5e" * 20


def post(api: Callable[..., Reply], body: object) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api("POST", METRICS, (*ADMIN, ("content-type", "application/json")), raw)


def test_without_or_with_a_wrong_token_is_refused(api: Callable[..., Reply]) -> None:
    assert api("GET", METRICS).status == 401
    assert api("GET", METRICS, (("authorization", "Bearer wrong-token-0123456789"),)).status == 403
    assert api("POST", METRICS, (), b'{"action": "reset"}').status == 401


def test_real_traffic_is_reported_by_endpoint_and_outcome(api: Callable[..., Reply]) -> None:
    # Given a miss then two hits of the metadata endpoint, and a miss of the traits endpoint
    target = f"/api/collection/{ERC721_CONTRACT}"
    assert [api("GET", target).cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
    assert api("GET", f"{target}/traits").cache == "MISS"
    close_all()  # a container that ends flushes what it recorded
    # When the metrics are read
    reply = api("GET", f"{METRICS}?window=15m", ADMIN)
    # Then they hold exactly that traffic
    assert reply.status == 200, reply.body
    analytics = reply.body["analytics"]
    assert analytics["breakdown"]["byEndpoint"]["metadata"]["hits"] == 2
    assert analytics["breakdown"]["byEndpoint"]["metadata"]["misses"] == 1
    assert analytics["breakdown"]["byEndpoint"]["traits"]["misses"] == 1
    assert analytics["overview"]["totalRequests"] == 4
    assert analytics["overview"]["hitRate"] == 0.5
    assert analytics["overview"]["p99"] > 0
    assert analytics["overview"]["cacheSize"] > 0
    assert set(analytics["breakdown"]["byCacheType"]) == {"HIT", "MISS"}
    assert analytics["eventPipeline"]["outboxBacklog"] is not None
    assert reply.headers["cache-control"] == "no-store"
    # And a reset forgets it
    assert post(api, {"action": "reset"}).status == 200
    assert api("GET", METRICS, ADMIN).body["analytics"]["overview"]["totalRequests"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_body"),
        (b"{nope", "invalid_body"),
        ([], "invalid_body"),
        ({}, "invalid_action"),
        ({"action": "explode"}, "invalid_action"),
        ({"action": "reset", "alertId": "x"}, "invalid_body"),
        ({"action": "reset", "extra": 1}, "invalid_body"),
        ({"action": "resolve-alert"}, "invalid_alert_id"),
        ({"action": "resolve-alert", "alertId": "Bad Id!"}, "invalid_alert_id"),
        ({"action": "resolve-alert", "alertId": 7}, "invalid_alert_id"),
    ],
)
def test_bad_action_bodies_are_400(api: Callable[..., Reply], body: object, code: str) -> None:
    reply = post(api, body)
    assert (reply.status, reply.body["code"]) == (400, code)


def test_bad_window_is_400_and_unknown_alert_404(api: Callable[..., Reply]) -> None:
    assert api("GET", f"{METRICS}?window=2d", ADMIN).body["code"] == "invalid_window"
    assert api("GET", f"{METRICS}?window=", ADMIN).body["code"] == "invalid_window"
    missing = post(api, {"action": "resolve-alert", "alertId": "hit_rate_low"})
    assert (missing.status, missing.body["code"]) == (404, "alert_not_found")


def test_the_dead_letter_depth_comes_from_the_queue(
    api: Callable[..., Reply], moto_bus: MotoBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two events in the dead-letter queue
    sqs = moto_bus.sqs
    url = sqs.create_queue(QueueName="such-market-events-dlq")["QueueUrl"]  # type: ignore[attr-defined]
    for index in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": index}))  # type: ignore[attr-defined]
    monkeypatch.setenv("EVENTS_DLQ_URL", url)
    close_all()
    # When the metrics are read, Then the depth is reported and a critical alert is open
    body = api("GET", METRICS, ADMIN).body
    assert body["analytics"]["eventPipeline"]["dlqDepth"] == 2
    assert [alert["id"] for alert in body["analytics"]["alerts"]] == ["dlq_not_empty"]
    assert body["health"]["status"] == "unhealthy"


def test_consumers_count_the_events_they_processed_and_failed(api: Callable[..., Reply]) -> None:
    import invalidate_cache

    from tests.functions.conftest import FakeContext, load_event

    invalidate_cache.lambda_handler(load_event("event_nft_transferred"), FakeContext())  # type: ignore[arg-type]
    broken = load_event("event_user_updated")
    broken["detail"]["fid"] = "not-a-fid"
    with pytest.raises(Exception, match="fid"):
        invalidate_cache.lambda_handler(broken, FakeContext())  # type: ignore[arg-type]
    pipeline = api("GET", METRICS, ADMIN).body["analytics"]["eventPipeline"]
    assert (pipeline["eventsProcessed"], pipeline["eventsFailed"]) == (1, 1)


def test_never_cached_pages_are_bypass_and_cannot_skew_the_hit_rate(
    api: Callable[..., Reply], db: psycopg.Connection[Any]
) -> None:
    # Given an indexed collection whose first page is read three times (a miss, then two hits)
    seed_indexed_collection(db, address=SEEDED, tokens=50, holder=lambda _: "0x" + "11" * 20)
    target = f"/api/collection/{SEEDED}/nfts"
    assert [api("GET", target).cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
    # When a caller floods a page size that is never cached (issue 15: 700 pageSize=7 GETs)
    floods = {api("GET", f"{target}?pageSize=7&page={index % 5}").cache for index in range(150)}
    close_all()
    # Then each of those answers says BYPASS, and is recorded so: in the requests, not in the hit rate
    assert floods == {"BYPASS"}
    analytics = api("GET", METRICS, ADMIN).body["analytics"]
    page = analytics["breakdown"]["byEndpoint"]["nfts-page"]
    assert (page["requests"], page["hits"], page["misses"], page["bypass"], page["cacheable"]) == (153, 2, 1, 150, 3)
    assert analytics["overview"]["hitRate"] == round(2 / 3, 4)
    # And no alert opens: three cacheable requests are too few to judge
    assert analytics["alerts"] == []


# -- issue 15, item 9: the operator's figures neither lag nor leak ------------------------------------------


def test_every_request_reaches_the_metrics_within_the_bound_with_no_request_after_it(
    api: Callable[..., Reply], cache: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from such_market.analytics import recorder
    from such_market.analytics.report import Pipeline, metrics_report
    from such_market.cache.keys import CacheKeys

    # Given a container whose flusher writes pending figures 0.5 s after they were recorded
    monkeypatch.setattr(recorder, "FLUSH_INTERVAL_SECONDS", 0.5)
    close_all()
    # When 60 requests are served and then nothing more (issue 15: 60 requests showed as 2 for over 20 s)
    target = f"/api/collection/{ERC721_CONTRACT}"
    assert [api("GET", target).cache for _ in range(60)] == ["MISS"] + ["HIT"] * 59
    # Then, with no further request at all, what the metrics endpoint reads (the minute hashes; read
    # directly, since any request through a handler of this process could flush the container) counts
    # all 60, and the endpoint answers the same
    quiet = Pipeline(outbox_backlog=0, oldest_unpublished_age_seconds=0.0, dlq_depth=0)
    seen = []
    for _ in range(100):  # up to ~10 s: 20 times the bound, so a slow machine cannot fail it
        answer = metrics_report(client=cache, keys=CacheKeys("such-market"), window="15m", pipeline=quiet)
        seen.append(answer["analytics"]["overview"]["totalRequests"])
        if seen[-1] == 60:
            break
        time.sleep(0.1)
    assert seen[-1] == 60, seen
    assert api("GET", METRICS, ADMIN).body["analytics"]["overview"]["totalRequests"] == 60


def test_each_invocation_prints_its_own_figures_as_emf(
    api: Callable[..., Reply], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a warm container on Lambda without the post-invoke extension (so nothing may wait for later)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "such-market-CollectionMetadataFunction")
    close_all()
    target = f"/api/collection/{ERC721_CONTRACT}"
    api("GET", target)
    capsys.readouterr()
    # When two invocations are served (a hit each)
    assert [api("GET", target).cache for _ in range(2)] == ["HIT", "HIT"]
    # Then each printed one EMF document of its own figures before its handler returned, before any flush
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(documents) == 2
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "SuchMarket"
        assert directive["Dimensions"] == [["service", "Endpoint"], ["service"]]
        assert [metric["Name"] for metric in directive["Metrics"]] == ["Requests", "CacheHit", "Latency"]
        assert (document["Endpoint"], document["Requests"], document["CacheHit"]) == ("metadata", 1, 1)
        assert 0 < document["Latency"] < 1000
        assert "CacheMiss" not in document
