"""The live performance test end to end: POST run → 202 and an event on the bus → the runner function runs
it → GET answers every figure; one run at a time (409); its keys are removed; reset; bad input → 400."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
import run_performance_test

from tests.conftest import ADMIN_TOKEN, MotoBus
from tests.functions.conftest import FakeContext, Reply

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"), ("content-type", "application/json"))
PATH = "/api/admin/cache/test/performance"
Call = Callable[..., Reply]


class LongContext(FakeContext):
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 120_000


def post(api: Call, body: object) -> Reply:
    return api("POST", PATH, ADMIN, json.dumps(body).encode())


def test_a_quick_run_end_to_end(api: Call, moto_bus: MotoBus, cache: redis.Redis) -> None:
    # Given a run requested
    queued = post(api, {"action": "run"})
    assert queued.status == 202, queued.body
    run_id = queued.body["runId"]
    assert queued.body == {"runId": run_id, "status": "queued", "profile": "quick"}
    assert api("GET", f"{PATH}?runId={run_id}", ADMIN).body["status"] == "queued"
    # Then a second run, or a reset, is refused while it holds the lock
    assert (post(api, {"action": "run"}).status, post(api, {"action": "reset"}).status) == (409, 409)
    # When the runner function gets the event the request published
    [event] = [
        message for message in moto_bus.received() if message["detail-type"] == "cache.performance_test_requested"
    ]
    summary = run_performance_test.lambda_handler(event, LongContext())
    assert summary["status"] == "completed"
    # And a redelivery of the same event does nothing
    assert "skipped" in run_performance_test.lambda_handler(event, LongContext())
    # Then the run's figures are answered, by id and as the latest
    reply = api("GET", f"{PATH}?runId={run_id}", ADMIN)
    assert reply.status == 200
    assert reply.headers["cache-control"] == "no-store"
    run = reply.body
    assert api("GET", PATH, ADMIN).body == run
    assert run["status"] == "completed"
    assert "lockValue" not in run
    assert run["health"]["connected"] is True
    assert run["health"]["pingMs"] > 0
    assert {item["operation"] for item in run["basicOperations"]} == {"SET", "GET", "INCR", "PIPELINE_GET_10", "DEL"}
    assert [level["clients"] for level in run["concurrency"]] == [1, 4, 8]
    assert all(level["p50Ms"] <= level["p95Ms"] <= level["p99Ms"] for level in run["concurrency"])
    assert all(level["opsPerSecond"] > 0 for level in run["concurrency"])
    assert run["stress"]["p99BoundMs"] == 50.0
    assert run["stress"]["maxErrorRate"] == 0.01
    assert run["stress"]["steps"]
    assert run["stress"]["stoppedBy"] in {"breaking_point", "end_of_ladder"}
    assert "recovered" in run["recovery"]
    assert run["recommendations"]
    # And its keys are gone, the lock is free (a new run can start), and durable state is under its prefix
    assert not list(cache.scan_iter(match="such-market:perftest:*"))
    assert run["cleanup"]["keysDeleted"] > 0
    # When the stored runs are reset (after the next run is done)
    again = post(api, {"action": "run"})
    assert again.status == 202
    cache.delete("such-market:durable:perftest:{perftest}:lock")  # as if that run had ended
    reset = post(api, {"action": "reset"})
    # Then they are gone
    assert (reset.status, reset.body) == (200, {"success": True, "runsDeleted": 2})
    assert api("GET", PATH, ADMIN).body["code"] == "performance_run_not_found"
    assert api("GET", f"{PATH}?runId={run_id}", ADMIN).status == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_body"),
        (b"{}", "invalid_action"),
        (b'{"action": "explode"}', "invalid_action"),
        (b'{"action": "run", "profile": "huge"}', "invalid_profile"),
        (b'{"action": "reset", "profile": "quick"}', "invalid_body"),
        (b'{"action": "run", "extra": 1}', "invalid_body"),
    ],
)
def test_bad_bodies_are_400(api: Call, body: bytes, code: str) -> None:
    reply = api("POST", PATH, ADMIN, body)
    assert (reply.status, reply.body["code"]) == (400, code)


def test_bad_run_id_is_400(api: Call) -> None:
    assert api("GET", f"{PATH}?runId=nope", ADMIN).body["code"] == "invalid_run_id"
