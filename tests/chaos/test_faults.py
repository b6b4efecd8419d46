"""The fault suite: real PostgreSQL and Valkey paused (SIGSTOP), killed and restarted; the Alchemy stub
answering 429, 5xx, slowly and with truncated bodies; the bus refusing events.

Bars, per scenario (printed as a table at the end of the run): no request longer than its function's
deadline; no stale answer after recovery beyond the stated bound; no event lost; no 5xx other than a
503 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from typing import Any

import redis

from local.alchemy_stub import ERC721_CONTRACT
from local.services import free_port
from such_market.container import close_all
from such_market.health import DATABASE_CHECK_SECONDS
from tests.chaos.conftest import REPORTS, Answer, ScenarioReport, Stage
from tests.conftest import WEBHOOK_SIGNING_KEY
from tests.fixtures.seed import seed_indexed_collection

SEEDED = "0x" + "5e" * 20
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20
READ_FUNCTION = "CollectionMetadataFunction"  # every read function has the same timeout


def _report(stage: Stage, name: str, function_id: str = READ_FUNCTION) -> ScenarioReport:
    report = ScenarioReport(name, stage.deadline_of(function_id))
    REPORTS.append(report)
    return report


def _assert_bars(report: ScenarioReport) -> None:
    assert report.longest <= report.deadline_seconds + 0.5, report.row()  # + the test's own thread overhead
    assert report.bad_5xx == 0, [a for a in report.answers if a.status >= 500]
    assert report.stale_after_recovery == 0
    assert report.events_lost == 0


def _seed(stage: Stage) -> None:
    with stage.connect() as conn:
        seed_indexed_collection(conn, address=SEEDED, tokens=60, holder=lambda index: ALICE if index % 2 else BOB)


def _expire_kept(stage: Stage, keys: list[str]) -> None:
    """Make cached values stale but kept (fresh-until in the past), as after their TTL."""
    client = redis.Redis.from_url(stage.valkey.url)
    for key in keys:
        raw = client.get(key)
        assert raw is not None, key
        client.set(key, raw[:3] + b"0" * 13 + raw[16:], px=600_000)
    client.close()


CACHED = [f"/api/collection/{SEEDED}", f"/api/collection/{SEEDED}/traits"]
UNCACHED = [f"/api/collection/{SEEDED}/nfts/3", f"/api/collection/{SEEDED}/nfts?pageSize=7"]
CACHED_KEYS = [f"such-market:collections:{{{SEEDED}}}:metadata", f"such-market:collections:{{{SEEDED}}}:traits"]


def _baseline(stage: Stage, report: ScenarioReport) -> None:
    for target in CACHED:
        stage.call("GET", target)  # fill
    report.baseline = [stage.call("GET", target).seconds for target in CACHED * 5]


def _wait_for_the_cache(stage: Stage, target: str = CACHED[0]) -> float:
    """Poll until answers stop bypassing the cache (its breaker lets a trial through after 5 s)."""
    started = time.monotonic()
    while stage.call("GET", target).cache == "BYPASS":
        assert time.monotonic() - started < 10, "the cache was not used again within 10 s"
        time.sleep(0.2)
    return time.monotonic() - started


def _served_or_503(answers: list[Answer]) -> None:
    for answer in answers:
        assert answer.status in {200, 503}, answer
        if answer.status == 200:
            assert answer.cache in {"HIT", "STALE"}, answer


def test_postgres_paused(stage: Stage) -> None:
    report = _report(stage, "PostgreSQL paused (SIGSTOP)")
    _seed(stage)
    _baseline(stage, report)
    _expire_kept(stage, CACHED_KEYS)
    stage.signal_postgres(signal.SIGSTOP)
    try:
        # New clients (their connects time out), and one on a connection opened before the freeze: its
        # query would wait forever; the watchdog cuts it at the deadline
        during = stage.call_all(CACHED + UNCACHED)
        watched = stage.call("GET", CACHED[0])
        health = stage.call("GET", "/api/health")
    finally:
        stage.signal_postgres(signal.SIGCONT)
    report.add([*during, watched, health])
    # Cached keys are served STALE, the others are a 503 with Retry-After, all before the deadline
    assert [answer.cache for answer in during[: len(CACHED)]] == ["STALE", "STALE"]
    assert [answer.status for answer in during[len(CACHED) :]] == [503, 503]
    _served_or_503(during)
    assert (watched.status, watched.cache) == (200, "STALE")
    assert (health.status, health.body["database"]["status"]) == (503, "unavailable")
    assert health.seconds <= DATABASE_CHECK_SECONDS + 0.5  # a probe answers within its own bound
    after = [stage.call("GET", target) for target in CACHED + UNCACHED]
    report.add(after)
    assert all(answer.status == 200 for answer in after), after
    _assert_bars(report)


def test_postgres_killed_and_restarted(stage: Stage) -> None:
    report = _report(stage, "PostgreSQL killed, restarted")
    _seed(stage)
    _baseline(stage, report)
    _expire_kept(stage, CACHED_KEYS)
    stage.kill_postgres()
    try:
        during = stage.call_all(CACHED + UNCACHED)
    finally:
        stage.restart_postgres()
    report.add(during)
    _served_or_503(during)
    assert [answer.cache for answer in during[: len(CACHED)]] == ["STALE", "STALE"]
    after = [stage.call("GET", target) for target in CACHED + UNCACHED]
    report.add(after)
    assert all(answer.status == 200 for answer in after), after
    _assert_bars(report)


def test_valkey_paused(stage: Stage) -> None:
    report = _report(stage, "Valkey paused (SIGSTOP)")
    _seed(stage)
    _baseline(stage, report)
    stage.signal_valkey(signal.SIGSTOP)
    try:
        during = [stage.call("GET", target) for target in (CACHED + UNCACHED) * 3]
    finally:
        stage.signal_valkey(signal.SIGCONT)
    report.add(during)
    assert all((answer.status, answer.cache) == (200, "BYPASS") for answer in during), during
    _wait_for_the_cache(stage)
    after = [stage.call("GET", target) for target in CACHED * 2]
    report.add(after)
    assert {answer.cache for answer in after} <= {"HIT", "MISS"}
    _assert_bars(report)


def _webhook(stage: Stage, token: int, sender: str, receiver: str, event_id: str) -> Answer:
    body = json.dumps(
        {
            "webhookId": "wh_chaos",
            "id": event_id,
            "createdAt": "2026-12-04T20:00:00Z",
            "type": "NFT_ACTIVITY",
            "event": {
                "network": "BASE_MAINNET",
                "activity": [
                    {
                        "fromAddress": sender,
                        "toAddress": receiver,
                        "contractAddress": SEEDED,
                        "category": "erc721",
                        "erc721TokenId": hex(token),
                        "log": {
                            "blockNumber": hex(10_000 + token),
                            "transactionHash": "0x" + hashlib.sha256(event_id.encode()).hexdigest(),
                            "logIndex": "0x1",
                            "blockHash": "0x" + "cd" * 32,
                            "removed": False,
                        },
                    }
                ],
            },
        }
    ).encode()
    signature = hmac.new(WEBHOOK_SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    return stage.call("POST", "/api/webhooks/alchemy", [("x-alchemy-signature", signature)], body)


def _owner(stage: Stage, token: int) -> Answer:
    return stage.call("GET", f"/api/collection/{SEEDED}/nfts/{token}/owner")


def _redrive(stage: Stage) -> dict[str, Any]:
    from local.invoker import Invoker

    result = Invoker(stage.template).invoke("RedriveDeadLettersFunction", {})
    assert isinstance(result, dict)
    return result


def test_valkey_paused_while_a_transfer_lands(stage: Stage) -> None:
    report = _report(stage, "Valkey paused during a transfer")
    _seed(stage)
    token = 3  # index 1: held by ALICE
    before = _owner(stage, token)
    assert (before.status, before.body.get("owner"), before.cache) == (200, ALICE, "MISS"), before
    assert _owner(stage, token).cache == "HIT"
    report.baseline = [_owner(stage, token).seconds for _ in range(5)]
    stage.signal_valkey(signal.SIGSTOP)
    try:
        moved = _webhook(stage, token, ALICE, BOB, "whevt_chaos_1")
        during = [_owner(stage, token) for _ in range(3)]
        assert stage.bus.drain(timeout=60)  # the invalidation fails every attempt: a dead letter
    finally:
        stage.signal_valkey(signal.SIGCONT)
    report.add([moved, *during])
    assert moved.status == 200, moved
    assert all((answer.body["owner"], answer.cache) == (BOB, "BYPASS") for answer in during)
    failed = [dead.function_id for dead in stage.bus.dead_letters]
    assert "InvalidateCacheFunction" in failed, failed  # every consumer that needs the cache failed
    # Once the cache answers again the redrive (every minute in AWS) republishes the events
    _wait_for_the_cache(stage)
    assert _redrive(stage)["redriven"] == len(failed)
    assert stage.bus.drain(timeout=60)
    assert stage.bus.dead_letters == []
    after = [_owner(stage, token) for _ in range(3)]
    report.add(after)
    report.stale_after_recovery = sum(answer.body["owner"] != BOB for answer in after)
    with stage.connect() as conn:
        report.events_lost = conn.execute(
            "SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL"
        ).fetchone()[0]  # type: ignore[index]
    _assert_bars(report)


def test_valkey_killed_and_restarted(stage: Stage) -> None:
    report = _report(stage, "Valkey killed, restarted")
    _seed(stage)
    _baseline(stage, report)
    stage.kill_valkey()
    try:
        during = [stage.call("GET", target) for target in (CACHED + UNCACHED) * 2]
        moved = _webhook(stage, 9, BOB, ALICE, "whevt_chaos_2")
    finally:
        stage.restart_valkey()
    report.add([*during, moved])
    assert all((answer.status, answer.cache) == (200, "BYPASS") for answer in during), during
    assert moved.status == 200
    _wait_for_the_cache(stage)
    after = [_owner(stage, 9), _owner(stage, 9)]
    report.add(after)
    report.stale_after_recovery = sum(answer.body["owner"] != ALICE for answer in after)
    assert stage.bus.drain(timeout=60)
    _redrive(stage)
    assert stage.bus.drain(timeout=60)
    _assert_bars(report)


def test_upstream_failing(stage: Stage) -> None:
    report = _report(stage, "Alchemy 429 (Retry-After 7) / 5xx / slow / truncated")
    target = f"/api/collection/{ERC721_CONTRACT}"
    faults: list[tuple[str, dict[str, Any]]] = [
        ("rate_limit_every", {"rate_limit_every": 1, "retry_after_seconds": 7}),
        ("server_error_every", {"server_error_every": 1}),
        ("latency_ms", {"latency_ms": 11_000}),
        ("truncate_bodies", {"truncate_bodies": True}),
    ]
    for _, settings in faults:
        stage.alchemy.reset()
        for name, value in settings.items():
            setattr(stage.alchemy, name, value)
        answer = stage.call("GET", target)
        report.add([answer])
        assert (answer.status, answer.body["code"]) == (503, "service_unavailable"), (settings, answer)
        assert int(answer.retry_after or 0) > 0
    stage.alchemy.reset()
    with stage.connect() as conn:
        assert conn.execute("SELECT count(*) FROM collections").fetchone() == (0,)  # nothing partial stored
    recovered = stage.call("GET", target)
    report.add([recovered])
    assert (recovered.status, recovered.cache) == (200, "MISS")
    _assert_bars(report)


def test_bus_refusing_events(stage: Stage, monkeypatch: Any) -> None:
    report = _report(stage, "bus refusing events", "AlchemyWebhookFunction")
    _seed(stage)
    monkeypatch.setenv("EVENTBRIDGE_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    close_all()
    moved = _webhook(stage, 15, ALICE, BOB, "whevt_chaos_3")
    report.add([moved])
    assert moved.status == 200
    with stage.connect() as conn:
        waiting = conn.execute("SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL").fetchone()
    assert waiting is not None
    assert waiting[0] > 0
    # The bus is back: the relay (every minute) publishes what the outbox kept
    monkeypatch.setenv("EVENTBRIDGE_ENDPOINT_URL", stage.bus.url)
    close_all()
    from local.invoker import Invoker

    Invoker(stage.template).invoke("OutboxRelayFunction", {})
    assert stage.bus.drain(timeout=60)
    with stage.connect() as conn:
        report.events_lost = conn.execute(
            "SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL"
        ).fetchone()[0]  # type: ignore[index]
    after = _owner(stage, 15)
    report.add([after])
    report.stale_after_recovery = int(after.body["owner"] != BOB)
    _assert_bars(report)
