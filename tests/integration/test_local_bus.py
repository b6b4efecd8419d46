"""The local EventBridge bus, driven by a real boto3 client, delivering to fixture consumers.

The consumers (tests/fixtures/handlers) record what they get in the real test Valkey, so each
assertion reads what a function actually received through the invoker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import redis
from botocore.exceptions import ClientError

from local.bus import LocalEventBus
from local.invoker import Invoker
from local.scheduler import LocalScheduler
from local.template import Template
from such_market.events.models import CollectionUpdated, Event
from such_market.events.outbox import enqueue
from tests.conftest import CacheServer
from tests.fixtures.handlers.failing import ATTEMPTS
from tests.fixtures.handlers.recorder import DELIVERIES

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "bus_template.yaml"


@pytest.fixture
def template() -> Template:
    return Template.load(FIXTURE_TEMPLATE)


@pytest.fixture
def bus(
    template: Template, cache_server: CacheServer, cache: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalEventBus]:
    monkeypatch.setenv("REDIS_URL", cache_server.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true" if cache_server.cluster else "false")
    local_bus = LocalEventBus(template, Invoker(template), bus_name="such-market", retry_base_delay=0.01, quiet=True)
    with local_bus:
        yield local_bus


@pytest.fixture
def events_client(bus: LocalEventBus) -> Any:
    return boto3.client(
        "events",
        endpoint_url=bus.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _entry(detail_type: str, detail: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "Source": "such-market",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "EventBusName": "such-market",
        **extra,
    }


def _deliveries(cache: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(item) for item in cache.lrange(DELIVERIES, 0, -1)]


def _by_function(cache: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for delivery in _deliveries(cache):
        grouped.setdefault(delivery["function"], []).append(delivery["event"])
    return grouped


def test_put_events_delivers_a_full_event_to_the_matching_rule_only(bus, events_client, cache):
    # Given a collection.updated entry for the such-market bus
    detail = {"contractAddress": "0xabc", "reason": "test", "eventId": "e-1", "occurredAt": "2026-01-01T00:00:00Z"}

    # When it is put through boto3 and the bus drains
    response = events_client.put_events(Entries=[_entry("collection.updated", detail, Resources=["r-1"])])
    assert bus.drain(timeout=10)

    # Then it is accepted and only the collection recorder got it, as a full EventBridge event
    assert response["FailedEntryCount"] == 0
    (accepted,) = response["Entries"]
    received = _by_function(cache)
    assert list(received) == ["CollectionRecorderFunction"]
    (event,) = received["CollectionRecorderFunction"]
    assert event["id"] == accepted["EventId"]
    assert event["version"] == "0"
    assert event["source"] == "such-market"
    assert event["detail-type"] == "collection.updated"
    assert event["detail"] == detail
    assert event["resources"] == ["r-1"]
    assert event["account"] == "123456789012"
    assert event["region"] == "us-east-1"
    assert event["time"].endswith("Z")


def test_detail_patterns_select_which_events_a_rule_gets(bus, events_client, cache):
    # Given a transfer of zero tokens, a removed transfer and a real transfer
    base = {"contractAddress": "0xabc", "tokenId": "1", "from": "0x1", "to": "0x2"}
    entries = [
        _entry("nft.transferred", {**base, "amount": 0, "removed": False}),
        _entry("nft.transferred", {**base, "amount": 3, "removed": True}),
        _entry("nft.transferred", {**base, "amount": 2, "removed": False}),
    ]

    # When they are put
    response = events_client.put_events(Entries=entries)
    assert bus.drain(timeout=10)

    # Then only the real transfer reached the transfer recorder
    assert response["FailedEntryCount"] == 0
    received = _by_function(cache)
    assert list(received) == ["TransferRecorderFunction"]
    (event,) = received["TransferRecorderFunction"]
    assert event["id"] == response["Entries"][2]["EventId"]
    assert event["detail"]["amount"] == 2


def test_events_reach_only_the_rules_of_their_bus(bus, events_client, cache):
    # Given an aws.* event on the default bus and another on the such-market bus
    on_default = {"Source": "aws.test", "DetailType": "x", "Detail": "{}"}
    on_named = {"Source": "aws.test", "DetailType": "x", "Detail": "{}", "EventBusName": "such-market"}

    # When both are put
    response = events_client.put_events(Entries=[on_default, on_named])
    assert bus.drain(timeout=10)

    # Then only the default-bus rule fired, once, for the default-bus event
    received = _by_function(cache)
    assert list(received) == ["DefaultBusRecorderFunction"]
    assert [event["id"] for event in received["DefaultBusRecorderFunction"]] == [response["Entries"][0]["EventId"]]


def test_a_failing_target_is_retried_then_dead_lettered(bus, events_client, cache):
    # Given a rule whose target always fails, with MaximumRetryAttempts 2
    # When an event for it is put
    response = events_client.put_events(Entries=[_entry("cache.cleared", {"scope": "all", "by": "test"})])
    assert bus.drain(timeout=10)

    # Then the target ran 1 + 2 times and the event landed in the dead letters with the error
    assert int(cache.get(ATTEMPTS) or 0) == 3
    (dead,) = bus.dead_letters
    assert dead.function_id == "FailingFunction"
    assert dead.rule == "FailingFunction.CacheCleared"
    assert dead.attempts == 3
    assert "RuntimeError: boom" in dead.error
    assert dead.event["id"] == response["Entries"][0]["EventId"]

    # And GET /dead-letters shows it
    with urllib.request.urlopen(f"{bus.url}/dead-letters", timeout=5) as reply:  # noqa: S310 - loopback
        listed = json.loads(reply.read())
    assert [item["event"]["id"] for item in listed] == [dead.event["id"]]
    assert listed[0]["attempts"] == 3


def test_more_than_ten_entries_are_rejected_as_a_whole(bus, events_client, cache):
    # Given eleven valid entries
    entries = [_entry("collection.updated", {"contractAddress": f"0x{i}"}) for i in range(11)]

    # When they are put in one request
    with pytest.raises(ClientError) as raised:
        events_client.put_events(Entries=entries)

    # Then EventBridge's ValidationException comes back and nothing is delivered
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert bus.drain(timeout=10)
    assert _deliveries(cache) == []


def test_bad_entries_fail_one_by_one_in_the_response(bus, events_client, cache):
    # Given a batch with a malformed detail, a non-object detail, a missing detail, an unknown bus and a good entry
    entries = [
        {"Source": "such-market", "DetailType": "collection.updated", "Detail": "{not json"},
        {"Source": "such-market", "DetailType": "collection.updated", "Detail": "[1, 2]"},
        {"Source": "such-market", "DetailType": "collection.updated"},
        _entry("collection.updated", {}, EventBusName="no-such-bus"),
        _entry("collection.updated", {"contractAddress": "0xabc"}),
    ]

    # When the batch is put
    response = events_client.put_events(Entries=entries)
    assert bus.drain(timeout=10)

    # Then each bad entry has its error code, and the good one was accepted and delivered
    assert response["FailedEntryCount"] == 4
    codes = [entry.get("ErrorCode") for entry in response["Entries"]]
    assert codes == ["MalformedDetail", "MalformedDetail", "InvalidArgument", "ResourceNotFoundException", None]
    assert all(entry.get("ErrorMessage") for entry in response["Entries"][:4])
    (delivered,) = _deliveries(cache)
    assert delivered["event"]["id"] == response["Entries"][4]["EventId"]


def test_other_operations_are_refused(bus):
    # Given a request for an operation the local bus does not speak
    request = urllib.request.Request(  # noqa: S310 - loopback
        bus.url,
        data=b"{}",
        headers={"X-Amz-Target": "AWSEvents.ListRules", "Content-Type": "application/x-amz-json-1.1"},
        method="POST",
    )

    # When it is sent
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback

    # Then the bus answers 400 UnknownOperationException
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["__type"] == "UnknownOperationException"


def test_drain_waits_for_every_delivery_of_a_burst(bus, cache):
    # Given fifty events put directly
    ids = [bus.publish("such-market", "collection.refreshed", {"n": n}) for n in range(50)]

    # When the bus drains
    drained = bus.drain(timeout=20)

    # Then every event was delivered exactly once
    assert drained
    assert sorted(event["id"] for event in _by_function(cache)["CollectionRecorderFunction"]) == sorted(ids)


def test_run_now_invokes_a_scheduled_function_with_a_scheduled_event(template, cache_server, cache, monkeypatch):
    # Given the fixture template's schedule of the collection recorder
    monkeypatch.setenv("REDIS_URL", cache_server.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true" if cache_server.cluster else "false")
    scheduler = LocalScheduler(template, Invoker(template), quiet=True)

    # When it is run now
    result = scheduler.run_now("CollectionRecorderFunction")

    # Then the function got an EventBridge scheduled event and its result is returned
    assert result == {"recorded": True}
    (delivery,) = _deliveries(cache)
    event = delivery["event"]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.scheduler"  # a ScheduleV2, like events/outbox_relay.json
    assert event["detail"] == {}
    assert event["resources"][0].endswith(":schedule/default/CollectionRecorderFunction.EveryFiveMinutes")


def test_scheduler_cli_relays_the_outbox_through_a_local_bus(db_url, cache_server):
    # Given an unpublished event in the outbox, and no EventBridge endpoint configured
    with psycopg.connect(db_url) as conn, conn.transaction():
        enqueue(conn=conn, events=[Event(CollectionUpdated(contract_address="0x" + "ab" * 20, reason="test"))])
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "EVENTBRIDGE_"))}
    env |= {"DATABASE_URL": db_url, "REDIS_URL": cache_server.url, "REDIS_CLUSTER": str(cache_server.cluster).lower()}

    # When `python -m local.scheduler run OutboxRelayFunction` runs
    completed = subprocess.run(
        [sys.executable, "-m", "local.scheduler", "run", "OutboxRelayFunction"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then the relay published it with the real boto3 publisher, to a local bus (never AWS)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"published": 1, "failed": 0, "remaining": 0}


def test_scheduler_cli_names_unknown_functions(db_url, cache_server):
    env = dict(os.environ) | {"DATABASE_URL": db_url, "REDIS_URL": cache_server.url}
    completed = subprocess.run(
        [sys.executable, "-m", "local.scheduler", "run", "NoSuchFunction"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "OutboxRelayFunction" in completed.stderr
