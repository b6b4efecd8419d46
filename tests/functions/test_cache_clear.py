"""POST /api/admin/cache/clear through its handler: admin check, bad bodies, each scope, the event."""

from __future__ import annotations

import json
from typing import Any

import cache_clear
import pytest
import redis

from such_market.admin.cache_clear import ClearRequest, cache_cleared, clear_cache
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys
from such_market.cache.store import get_cache
from such_market.cache.tiers import Tier
from such_market.config import load_settings
from such_market.events.models import CacheCleared, Event, parse_detail
from such_market.events.publisher import PublishResult
from such_market.events.wire import put_events_entry
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, load_event

KEYS = CacheKeys("such-market")
A = "0x" + "aa" * 20
WALLET = "0x" + "01" * 20
DURABLE = KEYS.durable("locks", "refresh", A)


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus, cache: redis.Redis) -> MotoBus:
    """A handler environment with a few cache keys of each scope and one durable record."""
    front = get_cache(load_settings(cache_clear.CacheClearSettings).cache)
    for key, indexes in (
        (KEYS.collection_metadata(A), [KEYS.collection_index(A)]),
        (KEYS.owned(A, WALLET, 0, 20), [KEYS.collection_index(A), KEYS.owned_index(A, WALLET)]),
        (KEYS.wallet_contracts(WALLET), []),
        (KEYS.user_profile(7), []),
    ):
        front.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=indexes)
    cache.set(DURABLE, b"held")
    return moto_bus


def call(body: object, *, event: str = "cache_clear") -> dict[str, Any]:
    request = load_event(event)
    request["body"] = body if isinstance(body, str) else json.dumps(body)
    response: dict[str, Any] = cache_clear.lambda_handler(request, FakeContext())  # type: ignore[arg-type]
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


def test_without_token_is_401(env: MotoBus) -> None:
    reply = call({"scope": "all"}, event="cache_clear_no_token")
    assert reply == {"status": 401, "body": {"error": "admin credential required", "code": "missing_credentials"}}


def test_with_wrong_token_is_403_and_clears_nothing(env: MotoBus, cache: redis.Redis) -> None:
    reply = call({"scope": "all"}, event="cache_clear_wrong_token")
    assert reply["status"] == 403
    assert reply["body"]["code"] == "invalid_credentials"
    assert cache.exists(KEYS.collection_metadata(A))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "invalid_body"),
        ("{nope", "invalid_body"),
        ([], "invalid_body"),
        ({}, "invalid_scope"),
        ({"scope": "everything"}, "invalid_scope"),
        ({"scope": 1}, "invalid_scope"),
        ({"scope": "all", "junk": 1}, "invalid_body"),
        ({"scope": "all", "contractAddress": A}, "invalid_body"),
        ({"scope": "collection"}, "invalid_body"),
        ({"scope": "collection", "contractAddress": "0x123"}, "invalid_address"),
        ({"scope": "collection", "contractAddress": 7}, "invalid_address"),
        ({"scope": "collection", "contractAddress": A, "fid": 1}, "invalid_body"),
        ({"scope": "wallet", "contractAddress": A}, "invalid_body"),
        ({"scope": "wallet", "walletAddress": "not-an-address"}, "invalid_address"),
        ({"scope": "user"}, "invalid_body"),
        ({"scope": "user", "fid": "7"}, "invalid_fid"),
        ({"scope": "user", "fid": 0}, "invalid_fid"),
        ({"scope": "user", "fid": True}, "invalid_fid"),
        ({"scope": "user", "fid": 2**63}, "invalid_fid"),
        ({"scope": "user", "fid": 7.5}, "invalid_fid"),
    ],
)
def test_bad_body_is_400_and_clears_nothing(env: MotoBus, cache: redis.Redis, body: object, code: str) -> None:
    reply = call(body)
    assert reply["status"] == 400
    assert reply["body"]["code"] == code
    assert set(reply["body"]) == {"error", "code"}
    assert cache.exists(KEYS.collection_metadata(A))


@pytest.mark.parametrize("body", ["not base64!", "eyJzY29wZSI6ImFsbCJ9="])  # a bad character; bad padding
def test_a_body_marked_base64_that_is_not_is_400_and_clears_nothing(
    env: MotoBus, cache: redis.Redis, body: str
) -> None:
    request = load_event("cache_clear")
    request |= {"body": body, "isBase64Encoded": True}
    response = cache_clear.lambda_handler(request, FakeContext())  # type: ignore[arg-type]
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (400, "invalid_body")
    assert cache.exists(KEYS.collection_metadata(A))


@pytest.mark.parametrize(
    ("body", "deleted"),
    [
        ({"scope": "collection", "contractAddress": A.upper().replace("0X", "0x")}, [KEYS.collection_metadata(A)]),
        ({"scope": "wallet", "walletAddress": WALLET}, [KEYS.wallet_contracts(WALLET), KEYS.owned(A, WALLET, 0, 20)]),
        ({"scope": "user", "fid": 7}, [KEYS.user_profile(7)]),
        ({"scope": "user", "fid": 7.0}, [KEYS.user_profile(7)]),  # JSON: 7.0 is the integer 7
    ],
)
def test_each_scope_deletes_its_keys_and_announces_it(
    env: MotoBus, cache: redis.Redis, body: dict[str, Any], deleted: list[str]
) -> None:
    everything = [
        KEYS.collection_metadata(A),
        KEYS.owned(A, WALLET, 0, 20),
        KEYS.wallet_contracts(WALLET),
        KEYS.user_profile(7),
    ]
    reply = call(body)
    assert reply["status"] == 200
    # collection: the owned page is a key of the collection too
    expected = everything[:2] if body["scope"] == "collection" else deleted
    assert reply["body"] == {"success": True, "keysDeleted": len(expected)}
    assert {key for key in everything if not cache.exists(key)} == set(expected)
    assert cache.get(DURABLE) == b"held"
    events = env.received()
    assert [(event["detail-type"], event["detail"]["scope"], event["detail"]["by"]) for event in events] == [
        ("cache.cleared", body["scope"], "admin")
    ]
    # Built without the models (a cold-path saving), it must still be what a consumer's strict parse accepts
    (published,) = events
    detail = parse_detail(published["detail-type"], published["detail"])
    assert isinstance(detail, CacheCleared)
    assert (detail.scope, detail.by, detail.schema_version) == (body["scope"], "admin", 1)
    assert detail.event_id == published["detail"]["eventId"]
    assert published["detail"]["occurredAt"].endswith("Z")


def test_cache_cleared_is_byte_for_byte_what_the_model_would_publish() -> None:
    built = cache_cleared("wallet")
    modelled = Event(CacheCleared(scope="wallet", by="admin", event_id=built.event_id, occurred_at=built.occurred_at))
    assert put_events_entry(built, "bus", "such-market") == put_events_entry(modelled, "bus", "such-market")


def test_scope_all_deletes_every_cache_key_and_nothing_durable(env: MotoBus, cache: redis.Redis) -> None:
    cache_names = [name for name in cache.scan_iter() if not name.startswith(b"such-market:durable:")]
    durable = {name for name in cache.scan_iter() if name.startswith(b"such-market:durable:")}
    reply = call({"scope": "all"})
    assert reply == {"status": 200, "body": {"success": True, "keysDeleted": len(cache_names)}}
    # The durable names left are the record and the reaper's index registry (it forgets cleared indexes itself)
    assert set(cache.scan_iter()) == durable == {DURABLE.encode(), KEYS.index_registry().encode()}


def test_a_failed_publish_does_not_fail_the_clear(env: MotoBus, cache: redis.Redis) -> None:
    class RefusingPublisher:
        def publish(self, events: Any) -> PublishResult:
            return PublishResult(failed={event.event_id: "InternalFailure" for event in events})

    front = get_cache(load_settings(cache_clear.CacheClearSettings).cache)
    result = clear_cache(request=ClearRequest("user", fid=7), cache=front, publisher=RefusingPublisher)  # type: ignore[arg-type]
    assert result == {"success": True, "keysDeleted": 1}
    assert not cache.exists(KEYS.user_profile(7))
