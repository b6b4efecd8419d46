"""POST /api/webhooks/alchemy through its handler: signature first, then idempotent transfers with events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import alchemy_webhook
import pytest

from local.services import free_port
from such_market.container import close_all
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, Reply, load_event
from tests.integration.ownership_helpers import (
    ZERO,
    Conn,
    address,
    new_collection,
    outbox,
    ownership,
    user_collections,
    wallet_mappings,
)

SIGNING_KEY = "test-webhook-signing-key"
Api = Callable[..., Reply]
C721 = "0x5a4d000000000000000000000000000000000721"
C1155 = "0x5a4d000000000000000000000000000000001155"
ALICE, BOB = address(0xA11CE), address(0xB0B)


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus, monkeypatch: pytest.MonkeyPatch) -> MotoBus:
    monkeypatch.setenv("ALCHEMY_WEBHOOK_SIGNING_KEY", SIGNING_KEY)
    close_all()
    return moto_bus


def activity(
    sender: str, receiver: str, *, token: str | None = None, batch: list[tuple[str, str]] | None = None, **log: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "fromAddress": sender.upper().replace("0X", "0x"),
        "toAddress": receiver,
        "contractAddress": C721 if batch is None else C1155,
        "category": "erc721" if batch is None else "erc1155",
        "log": {
            "blockNumber": log.get("block", "0x10"),
            "transactionHash": log.get("tx", "0x" + "ab" * 32),
            "logIndex": log.get("index", "0x1"),
            "blockHash": "0x" + "cd" * 32,
            "removed": log.get("removed", False),
        },
    }
    if batch is None:
        entry["erc721TokenId"] = token
    else:
        entry["erc1155Metadata"] = [{"tokenId": t, "value": v} for t, v in batch]
    return entry


def delivery(*activities: dict[str, Any], event_id: str = "whevt_1") -> bytes:
    payload: dict[str, Any] = {"webhookId": "wh_1", "id": event_id, "createdAt": "2026-11-25T20:00:00Z"}
    payload |= {"type": "NFT_ACTIVITY", "event": {"network": "BASE_MAINNET", "activity": list(activities)}}
    return json.dumps(payload).encode()


def post(body: bytes, signature: str | None, *, base64_encoded: bool = False) -> dict[str, Any]:
    event = load_event("alchemy_webhook")
    event["body"] = base64.b64encode(body).decode() if base64_encoded else body.decode()
    event["isBase64Encoded"] = base64_encoded
    event["headers"].pop("x-alchemy-signature")
    if signature is not None:
        event["headers"]["X-Alchemy-Signature"] = signature
    response: dict[str, Any] = alchemy_webhook.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


def sign(body: bytes) -> str:
    return hmac.new(SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def known(db: Conn) -> None:
    new_collection(db, C721, "ERC721")
    new_collection(db, C1155, "ERC1155")


@pytest.mark.parametrize("signature", [None, "", "00" * 32, "not-hex"])
def test_unsigned_or_wrongly_signed_is_401_and_changes_nothing(
    env: MotoBus, db: Conn, known: None, signature: str | None
) -> None:
    body = delivery(activity(ZERO, ALICE, token="0x1"))
    reply = post(body, signature)
    assert reply == {
        "status": 401,
        "body": {"error": "missing or invalid webhook signature", "code": "invalid_signature"},
    }
    assert ownership(db) == {}
    assert outbox(db) == []
    assert db.execute("SELECT count(*) FROM ownership_activity").fetchone() == (0,)


def test_signature_is_checked_before_parsing(env: MotoBus, db: Conn) -> None:
    assert post(b"{not json", None)["status"] == 401
    assert post(b"{not json", sign(b"{not json"))["body"]["code"] == "invalid_json"
    assert post(b'{"id": "x"}', sign(b'{"id": "x"}'))["status"] == 400


def test_signed_transfer_moves_owner_updates_both_wallets_and_emits(env: MotoBus, db: Conn, known: None) -> None:
    # Given Alice minted token 0x1f
    mint = delivery(activity(ZERO, ALICE, token="0x1f", tx="0x" + "01" * 32), event_id="whevt_mint")
    assert post(mint, sign(mint))["body"] == {
        "received": 1,
        "applied": 1,
        "reversed": 0,
        "stale": 0,
        "duplicates": 0,
        "ignored": 0,
    }
    # When a signed delivery moves it to Bob
    move = delivery(activity(ALICE, BOB, token="0x1f", tx="0x" + "02" * 32, block="0x11"), event_id="whevt_move")
    reply = post(move, sign(move))
    # Then Bob owns token 31, Alice holds nothing, both wallets' summaries follow, events are in the outbox
    assert reply == {
        "status": 200,
        "body": {"received": 1, "applied": 1, "reversed": 0, "stale": 0, "duplicates": 0, "ignored": 0},
    }
    assert ownership(db) == {(C721, 31, BOB): 1}
    assert user_collections(db) == {(BOB, C721): (1, 1)}
    assert wallet_mappings(db) == {(BOB, C721): (1, 1)}
    events = outbox(db)[-2:]
    assert events[0][0] == "nft.transferred"
    assert events[0][1]["from"] == ALICE
    assert events[0][1]["to"] == BOB
    assert events[0][1]["tokenId"] == "31"
    assert events[0][1]["logIndex"] == 1
    assert events[0][1]["blockNumber"] == 17
    assert events[1][0] == "ownership.changed"
    assert set(events[1][1]["wallets"]) == {ALICE, BOB}
    # (the mint also listed the token, which the collection did not list: collection.updated)
    published = {"nft.transferred", "ownership.changed", "collection.updated"}
    assert {message["detail-type"] for message in env.received()} == published
    # And the same delivery again changes nothing
    count = len(outbox(db))
    assert post(move, sign(move))["body"] == {
        "received": 1,
        "applied": 0,
        "reversed": 0,
        "stale": 0,
        "duplicates": 1,
        "ignored": 0,
    }
    assert ownership(db) == {(C721, 31, BOB): 1}
    assert len(outbox(db)) == count


def test_base64_body_and_erc1155_batch(env: MotoBus, db: Conn, known: None) -> None:
    body = delivery(activity(ZERO, ALICE, batch=[("0x1", "0xa"), ("0x2", "0x3")]))
    reply = post(body, sign(body), base64_encoded=True)
    assert reply["body"] == {"received": 2, "applied": 2, "reversed": 0, "stale": 0, "duplicates": 0, "ignored": 0}
    send = delivery(activity(ALICE, BOB, batch=[("0x1", "0x4"), ("0x2", "0x3")], tx="0x" + "03" * 32), event_id="e2")
    post(send, sign(send))
    assert ownership(db) == {(C1155, 1, ALICE): 6, (C1155, 1, BOB): 4, (C1155, 2, BOB): 3}


def test_a_body_marked_base64_that_is_not_is_400_and_changes_nothing(env: MotoBus, db: Conn) -> None:
    event = load_event("alchemy_webhook")
    event |= {"body": "not base64!", "isBase64Encoded": True}
    response = alchemy_webhook.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (400, "invalid_body")
    assert db.execute("SELECT count(*) FROM ownership_activity").fetchone() == (0,)


def test_removed_log_reverses_the_transfer(env: MotoBus, db: Conn, known: None) -> None:
    mint = delivery(activity(ZERO, ALICE, token="0x5", tx="0x" + "04" * 32), event_id="e1")
    move = activity(ALICE, BOB, token="0x5", tx="0x" + "05" * 32, block="0x20")
    first = delivery(move, event_id="e2")
    for body in (mint, first):
        post(body, sign(body))
    assert ownership(db) == {(C721, 5, BOB): 1}
    reorg = delivery({**move, "log": {**move["log"], "removed": True}}, event_id="e3")
    assert post(reorg, sign(reorg))["body"] == {
        "received": 1,
        "applied": 0,
        "reversed": 1,
        "stale": 0,
        "duplicates": 0,
        "ignored": 0,
    }
    assert ownership(db) == {(C721, 5, ALICE): 1}
    assert outbox(db)[-2][1]["removed"] is True
    assert post(reorg, sign(reorg))["body"]["duplicates"] == 1


def test_an_out_of_order_transfer_is_reported_stale_not_applied(env: MotoBus, db: Conn, known: None) -> None:
    # Given token 7 minted to Alice and then moved to Bob (block 0x30)
    mint = delivery(activity(ZERO, ALICE, token="0x7", tx="0x" + "06" * 32, block="0x10"), event_id="e1")
    move = delivery(activity(ALICE, BOB, token="0x7", tx="0x" + "07" * 32, block="0x30"), event_id="e2")
    for body in (mint, move):
        assert post(body, sign(body))["body"]["applied"] == 1
    # When an older transfer of the token (block 0x20) is delivered late
    late = delivery(activity(ALICE, address(0xCAFE), token="0x7", tx="0x" + "08" * 32, block="0x20"), event_id="e3")
    reply = post(late, sign(late))
    # Then the receipt says it was stale (recorded, the owner did not move), and Bob still owns the token
    assert reply["body"] == {"received": 1, "applied": 0, "reversed": 0, "stale": 1, "duplicates": 0, "ignored": 0}
    assert ownership(db) == {(C721, 7, BOB): 1}


def test_a_read_after_the_200_sees_the_new_owner(env: MotoBus, db: Conn, known: None, api: Api) -> None:
    # Given token 3 minted to Alice, and its owner and Alice's tokens read (so cached)
    mint = delivery(activity(ZERO, ALICE, token="0x3", tx="0x" + "09" * 32), event_id="e1")
    post(mint, sign(mint))
    owner = f"/api/collection/{C721}/nfts/3/owner"
    alice_tokens = f"/api/collection/{C721}/nfts/owned?userAddress={ALICE}"
    assert api("GET", owner).body["owner"] == ALICE
    assert api("GET", owner).cache == "HIT"
    assert api("GET", alice_tokens).body["total"] == 1
    # When a delivery moves it to Bob (no event consumer runs: the bus here only queues the events)
    move = delivery(activity(ALICE, BOB, token="0x3", tx="0x" + "0a" * 32, block="0x11"), event_id="e2")
    assert post(move, sign(move))["status"] == 200
    # Then a read right after the 200 sees Bob, and Alice's tokens without it
    after = api("GET", owner)
    assert (after.cache, after.body["owner"]) == ("MISS", BOB)
    assert api("GET", alice_tokens).body["total"] == 0
    # And the events remain the backstop of the invalidation
    assert {message["detail-type"] for message in env.received()} >= {"nft.transferred", "ownership.changed"}


def test_a_cache_outage_does_not_fail_the_webhook(
    env: MotoBus, db: Conn, known: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cache that is down
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    # When a delivery is posted, Then it is applied and answered 200 (the events still carry the invalidation)
    mint = delivery(activity(ZERO, ALICE, token="0x4", tx="0x" + "0b" * 32), event_id="e1")
    reply = post(mint, sign(mint))
    assert (reply["status"], reply["body"]["applied"]) == (200, 1)
    assert ownership(db) == {(C721, 4, ALICE): 1}
    published = {"nft.transferred", "ownership.changed", "collection.updated"}  # the mint listed token 4
    assert {message["detail-type"] for message in env.received()} == published


def test_unusable_activities_are_ignored(env: MotoBus, db: Conn, known: None) -> None:
    body = delivery(activity(ZERO, ALICE, token=None), {"category": "erc20"}, activity(ZERO, ALICE, token="0x9"))
    assert post(body, sign(body))["body"] == {
        "received": 3,
        "applied": 1,
        "reversed": 0,
        "stale": 0,
        "duplicates": 0,
        "ignored": 2,
    }


def test_sample_event_is_correctly_signed(env: MotoBus) -> None:
    event = load_event("alchemy_webhook")
    assert event["headers"]["x-alchemy-signature"] == sign(event["body"].encode())
    response = alchemy_webhook.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    assert response["statusCode"] == 200
