"""The idempotent event consumer against real Valkey: each eventId is handled once, records are durable."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from such_market.config import CacheSettings, FunctionSettings
from such_market.container import close_all
from such_market.errors import ConfigurationError, InvalidEventError
from such_market.events.consumer import EventConsumer
from such_market.events.models import CollectionUpdated, NftTransferred
from tests.conftest import CacheServer

ROOT = Path(__file__).resolve().parents[2]
NAME = "test-consumer"
DURABLE_PREFIX = f"such-market:durable:idempotency:{NAME}#"
CACHE_PATTERNS = (
    "such-market:collections:*",
    "such-market:ownership:*",
    "such-market:wallets:*",
    "such-market:users:*",
)


@dataclass
class FakeLambdaContext:
    function_name: str = "such-market-test-consumer"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:such-market-test-consumer"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


CONTEXT: Any = FakeLambdaContext()


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / f"event_{name}.json").read_text())
    return event


def with_event_id(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    copied = copy.deepcopy(event)
    copied["detail"]["eventId"] = event_id
    return copied


class CacheOnlySettings(FunctionSettings):
    """A consumer that needs only the cache (its idempotency records)."""

    cache: CacheSettings


@pytest.fixture
def cache_env(cache_server: CacheServer, cache: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A cold container whose cache settings point at the (flushed) test Valkey."""
    monkeypatch.setenv("REDIS_URL", cache_server.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true" if cache_server.cluster else "false")
    monkeypatch.setenv("CACHE_PREFIX", "such-market")
    close_all()
    yield cache
    close_all()


@pytest.fixture
def consumer(cache_env: redis.Redis) -> EventConsumer:
    """A consumer whose handlers count their runs per eventId in Valkey (a real side effect)."""
    counter = cache_env
    built = EventConsumer(NAME, settings_model=CacheOnlySettings)

    @built.on(CollectionUpdated)
    def _updated(detail: CollectionUpdated) -> dict[str, Any]:
        runs = counter.incr(f"test:runs:{detail.event_id}")
        return {"runs": runs, "contract": detail.contract_address}

    @built.on(NftTransferred)
    def _transferred(detail: NftTransferred) -> None:
        counter.incr(f"test:runs:{detail.event_id}")
        if detail.removed:
            raise RuntimeError("transient failure")

    return built


def runs(cache: redis.Redis, event: dict[str, Any]) -> int:
    return int(cache.get(f"test:runs:{event['detail']['eventId']}") or 0)


def idempotency_keys(cache: redis.Redis) -> list[bytes]:
    return sorted(key for key in cache.scan_iter(match="*") if b":durable:idempotency:" in key)


def test_the_same_event_delivered_twice_is_handled_once(consumer: EventConsumer, cache_env: redis.Redis) -> None:
    # Given a collection.updated event, and the same event re-published by the outbox relay
    # (same detail.eventId, new EventBridge envelope id)
    event = sample("collection_updated")
    repeat = {**copy.deepcopy(event), "id": str(uuid.uuid4())}
    # When both are delivered
    first = consumer.handle(event, CONTEXT)
    second = consumer.handle(repeat, CONTEXT)
    # Then the handler ran once and the repeat got the first run's result
    assert runs(cache_env, event) == 1
    assert first == {"runs": 1, "contract": event["detail"]["contractAddress"]}
    assert second == first


def test_different_event_ids_are_each_handled(consumer: EventConsumer, cache_env: redis.Redis) -> None:
    # Given three events of the same content but different eventIds
    events = [with_event_id(sample("collection_updated"), str(uuid.uuid4())) for _ in range(3)]
    # When each is delivered
    for event in events:
        consumer.handle(event, CONTEXT)
    # Then each ran once
    assert [runs(cache_env, event) for event in events] == [1, 1, 1]


def test_records_are_durable_and_survive_a_cache_clear(consumer: EventConsumer, cache_env: redis.Redis) -> None:
    # Given a handled event and some cache keys of the collection
    event = sample("collection_updated")
    address = event["detail"]["contractAddress"]
    cache_env.set(f"such-market:collections:{{{address}}}:metadata", b"{}")
    consumer.handle(event, CONTEXT)
    # Then its idempotency record lives under the durable prefix and no cache pattern matches it
    keys = idempotency_keys(cache_env)
    assert len(keys) == 1
    assert keys[0].decode().startswith(DURABLE_PREFIX)
    # When the cache is cleared (every cache namespace)
    for pattern in CACHE_PATTERNS:
        for key in cache_env.scan_iter(match=pattern):
            cache_env.delete(key)
    # Then the cache keys are gone, the record is not, and a redelivery still does not run again
    assert cache_env.exists(f"such-market:collections:{{{address}}}:metadata") == 0
    assert idempotency_keys(cache_env) == keys
    assert 0 < cache_env.ttl(keys[0]) <= 24 * 60 * 60
    consumer.handle(event, CONTEXT)
    assert runs(cache_env, event) == 1


def test_a_failed_run_leaves_no_record_so_the_retry_runs(consumer: EventConsumer, cache_env: redis.Redis) -> None:
    # Given a handler that fails for this event
    event = sample("nft_transferred")
    event["detail"]["removed"] = True
    # When it is delivered and EventBridge retries it
    for _ in range(2):
        with pytest.raises(RuntimeError, match="transient"):
            consumer.handle(event, CONTEXT)
    # Then each delivery ran the handler (nothing marked it done), and no record is left behind
    assert runs(cache_env, event) == 2
    assert idempotency_keys(cache_env) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda event: event["detail"].update(contractAddress="0x123"), "contractAddress"),
        (lambda event: event["detail"].pop("eventId"), "lacks eventId"),
        (lambda event: event.update({"detail-type": "collection.deleted"}), "unknown detail type"),
        (lambda event: event.update(sample("cache_cleared")), "does not handle cache.cleared"),
        (lambda event: event.pop("detail"), "not an EventBridge event"),
    ],
    ids=["invalid-detail", "no-event-id", "unknown-type", "unhandled-type", "no-detail"],
)
def test_invalid_events_raise_and_run_nothing(
    consumer: EventConsumer, cache_env: redis.Redis, change: Any, message: str
) -> None:
    # Given an event with a bad detail, an unknown or unhandled detail type, or no detail
    event = sample("collection_updated")
    change(event)
    # When it is delivered
    # Then InvalidEventError says why (so the delivery fails into the DLQ), and nothing ran or was recorded
    with pytest.raises(InvalidEventError, match=message):
        consumer.handle(event, CONTEXT)
    assert not list(cache_env.scan_iter(match="test:runs:*"))
    assert idempotency_keys(cache_env) == []


def test_nothing_is_read_or_connected_before_the_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no cache configuration at all
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    close_all()
    # When a consumer is built and handlers registered (what a handler module does at import)
    consumer = EventConsumer(NAME, settings_model=CacheOnlySettings)

    @consumer.on(CollectionUpdated)
    def _updated(detail: CollectionUpdated) -> None:
        return None

    # Then nothing failed; the configuration is read only when the first event arrives
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        consumer.handle(sample("collection_updated"), CONTEXT)
    close_all()


def test_handlers_are_registered_once_per_registered_model() -> None:
    # Given a consumer with a collection.updated handler
    consumer = EventConsumer(NAME, settings_model=CacheOnlySettings)
    consumer.on(CollectionUpdated)(lambda detail: None)
    # Then a second handler for it, or a model outside the registry, is refused; so is a bad name
    with pytest.raises(ValueError, match="already has a handler"):
        consumer.on(CollectionUpdated)(lambda detail: None)

    class Unregistered(CollectionUpdated):
        DETAIL_TYPE = "collection.unregistered"

    with pytest.raises(ValueError, match="not a registered event model"):
        consumer.on(Unregistered)
    with pytest.raises(ValueError, match="name must be"):
        EventConsumer("Bad Name", settings_model=CacheOnlySettings)


def _wire_consumer(counter: redis.Redis) -> EventConsumer:
    """A consumer whose cache.cleared handler reads its detail in wire form (scope only), once per eventId."""
    built = EventConsumer(NAME, settings_model=CacheOnlySettings)

    def read_scope(detail: Mapping[str, Any]) -> tuple[str, str]:
        if detail.get("scope") not in ("all", "collection", "wallet", "user"):
            raise InvalidEventError("cache.cleared scope: unknown")
        return str(detail["eventId"]), str(detail["scope"])

    @built.on_wire("cache.cleared", read_scope)
    def _cleared(detail: tuple[str, str]) -> dict[str, Any]:
        event_id, scope = detail
        return {"runs": counter.incr(f"test:runs:{event_id}"), "scope": scope}

    return built


def test_a_wire_handler_gets_its_parsers_detail_once_per_event(cache_env: redis.Redis) -> None:
    # Given a consumer with a wire-form handler, and a cache.cleared event delivered twice
    consumer = _wire_consumer(cache_env)
    event = sample("cache_cleared")
    # When both deliveries arrive
    first = consumer.handle(event, CONTEXT)
    second = consumer.handle({**copy.deepcopy(event), "id": str(uuid.uuid4())}, CONTEXT)
    # Then the handler got what its parser read, once; the repeat got the first run's result
    assert first == {"runs": 1, "scope": event["detail"]["scope"]}
    assert second == first
    assert runs(cache_env, event) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda event: event["detail"].update(scope="everything"), "scope: unknown"),
        (lambda event: event.update(detail="not an object"), "not a JSON object"),
        (lambda event: event.update(sample("collection_updated")), "does not handle collection.updated"),
    ],
    ids=["refused-by-its-parser", "detail-not-an-object", "unhandled-type"],
)
def test_a_wire_handler_refuses_what_its_parser_refuses(cache_env: redis.Redis, change: Any, message: str) -> None:
    consumer = _wire_consumer(cache_env)
    event = sample("cache_cleared")
    change(event)
    with pytest.raises(InvalidEventError, match=message):
        consumer.handle(event, CONTEXT)
    assert not list(cache_env.scan_iter(match="test:runs:*"))
    assert idempotency_keys(cache_env) == []
