"""Each event type invalidates exactly its keys, through the invalidate_cache handler (fills racing an
invalidation are covered in test_cache_store)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import invalidate_cache
import psycopg
import pytest
import redis

from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys
from such_market.cache.store import get_cache
from such_market.cache.tiers import Tier
from such_market.config import load_settings
from tests.functions.conftest import FakeContext

ROOT = Path(__file__).resolve().parents[2]
KEYS = CacheKeys("such-market")
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
SENDER = "0x" + "01" * 20
RECEIVER = "0x" + "02" * 20
BYSTANDER = "0x" + "03" * 20
CONTEXT: Any = FakeContext()


def sample(detail_type: str, **detail: object) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / f"event_{detail_type.replace('.', '_')}.json").read_text())
    event = copy.deepcopy(event)
    event["detail"].update(detail, eventId=str(uuid.uuid4()))
    return event


@pytest.fixture
def filled(lambda_env: dict[str, str], db: psycopg.Connection[Any], cache: redis.Redis) -> dict[str, str]:
    """A cache holding keys of two collections, three wallets and two users (fid 1 owns SENDER)."""
    db.execute(
        "INSERT INTO fc_users (fid, username, custody_address, verified_eth_addresses) VALUES "
        "(1, 'alice', %s, ARRAY[%s]), (2, 'bob', %s, '{}')",
        ("0x" + "0f" * 20, SENDER, BYSTANDER),
    )
    front = get_cache(load_settings(invalidate_cache.InvalidatorSettings).cache)
    named: dict[str, str] = {}

    def put(name: str, key: str, *indexes: str) -> None:
        front.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=indexes)
        named[name] = key

    for collection in (A, B):
        index = KEYS.collection_index(collection)
        put(f"{collection}:metadata", KEYS.collection_metadata(collection), index)
        put(f"{collection}:page", KEYS.nft_page(collection, 0, 20), index)
        put(f"{collection}:traits", KEYS.traits(collection), index)
        put(f"{collection}:token7", KEYS.ownership(collection, 7), index)
        put(f"{collection}:token8", KEYS.ownership(collection, 8), index)
        for wallet in (SENDER, RECEIVER, BYSTANDER):
            put(
                f"{collection}:owned:{wallet}",
                KEYS.owned(collection, wallet, 0, 20),
                index,
                KEYS.owned_index(collection, wallet),
            )
    for wallet in (SENDER, RECEIVER, BYSTANDER):
        put(f"contracts:{wallet}", KEYS.wallet_contracts(wallet))
    for fid in (1, 2):
        put(f"profile:{fid}", KEYS.user_profile(fid))
        put(f"collections:{fid}", KEYS.user_collections(fid))
    return named


def surviving(cache: redis.Redis, named: dict[str, str]) -> set[str]:
    return {name for name, key in named.items() if cache.exists(key)}


def deleted_by(event: dict[str, Any], cache: redis.Redis, named: dict[str, str]) -> set[str]:
    before = surviving(cache, named)
    assert before == set(named)
    invalidate_cache.lambda_handler(event, CONTEXT)
    return before - surviving(cache, named)


def test_collection_refreshed_deletes_every_key_of_that_collection(filled: dict[str, str], cache: redis.Redis) -> None:
    gone = deleted_by(sample("collection.refreshed", contractAddress=A), cache, filled)
    assert gone == {name for name in filled if name.startswith(f"{A}:")}


def test_collection_updated_deletes_every_key_of_that_collection(filled: dict[str, str], cache: redis.Redis) -> None:
    gone = deleted_by(sample("collection.updated", contractAddress=B), cache, filled)
    assert gone == {name for name in filled if name.startswith(f"{B}:")}


def test_transfer_deletes_both_sides_and_nothing_else(filled: dict[str, str], cache: redis.Redis) -> None:
    # Given a transfer of token 7 of A from SENDER (owned by fid 1) to RECEIVER
    event = sample("nft.transferred", contractAddress=A, tokenId="7", **{"from": SENDER, "to": RECEIVER})
    # When it is handled
    gone = deleted_by(event, cache, filled)
    # Then the token's owner, both wallets' tokens in A and contract lists, and fid 1's collections go
    assert gone == {
        f"{A}:token7",
        f"{A}:owned:{SENDER}",
        f"{A}:owned:{RECEIVER}",
        f"contracts:{SENDER}",
        f"contracts:{RECEIVER}",
        "collections:1",
    }


def test_mint_skips_the_zero_address(filled: dict[str, str], cache: redis.Redis) -> None:
    event = sample("nft.transferred", contractAddress=A, tokenId="8", **{"from": "0x" + "0" * 40, "to": BYSTANDER})
    gone = deleted_by(event, cache, filled)
    assert gone == {f"{A}:token8", f"{A}:owned:{BYSTANDER}", f"contracts:{BYSTANDER}", "collections:2"}


def test_ownership_changed_covers_every_token_and_wallet(filled: dict[str, str], cache: redis.Redis) -> None:
    event = sample("ownership.changed", contractAddress=B, tokenIds=["7", "8"], wallets=[RECEIVER, BYSTANDER])
    gone = deleted_by(event, cache, filled)
    assert gone == {
        f"{B}:token7",
        f"{B}:token8",
        f"{B}:owned:{RECEIVER}",
        f"{B}:owned:{BYSTANDER}",
        f"contracts:{RECEIVER}",
        f"contracts:{BYSTANDER}",
        "collections:2",
    }


def test_user_updated_deletes_the_profile_collections_and_wallet_lists(
    filled: dict[str, str], cache: redis.Redis
) -> None:
    gone = deleted_by(sample("user.updated", fid=1, wallets=[SENDER]), cache, filled)
    assert gone == {"profile:1", "collections:1", f"contracts:{SENDER}"}


def test_a_duplicate_delivery_is_processed_once(filled: dict[str, str], cache: redis.Redis) -> None:
    # Given an event already handled, and the key it deleted filled again afterwards
    event = sample("collection.updated", contractAddress=A)
    invalidate_cache.lambda_handler(event, CONTEXT)
    cache.set(filled[f"{A}:metadata"], b"200" + b"9" * 13 + b"{}")
    # When the same event is delivered again
    invalidate_cache.lambda_handler(event, CONTEXT)
    # Then it is not applied twice (the new value survives)
    assert cache.exists(filled[f"{A}:metadata"])
