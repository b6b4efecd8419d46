"""POST /api/admin/ownership/stats through its handler: admin check, each action, bad bodies."""

from __future__ import annotations

import json
from typing import Any

import ownership_actions
import pytest

from local.alchemy_stub import ERC721_CONTRACT, distinct_owners, token_holders
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, load_event
from tests.integration.ownership_helpers import Conn, address, new_collection, outbox, ownership

STRANGER = address(0x5757)


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus) -> MotoBus:
    return moto_bus


def call(body: object, *, event: str = "ownership_actions") -> dict[str, Any]:
    request = load_event(event)
    request["body"] = body if isinstance(body, str) else json.dumps(body)
    response: dict[str, Any] = ownership_actions.lambda_handler(request, FakeContext())  # type: ignore[arg-type]
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


def test_without_token_is_401(env: MotoBus) -> None:
    reply = call({"action": "discovery-stats"}, event="ownership_actions_no_token")
    assert reply == {"status": 401, "body": {"error": "admin credential required", "code": "missing_credentials"}}


def test_with_wrong_token_is_403(env: MotoBus) -> None:
    reply = call({"action": "discovery-stats"}, event="ownership_actions_wrong_token")
    assert reply["status"] == 403
    assert reply["body"]["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "invalid_body"),
        ("{nope", "invalid_body"),
        ([], "invalid_body"),
        ({}, "invalid_action"),
        ({"action": "explode"}, "invalid_action"),
        ({"action": "sync"}, "invalid_body"),
        ({"action": "sync", "contractAddress": "0x123"}, "invalid_address"),
        ({"action": "verify", "contractAddress": 7}, "invalid_address"),
    ],
)
def test_bad_body_is_400(env: MotoBus, body: object, code: str) -> None:
    reply = call(body)
    assert reply["status"] == 400
    assert reply["body"]["code"] == code
    assert set(reply["body"]) == {"error", "code"}


def test_discovery_stats(env: MotoBus, db: Conn) -> None:
    new_collection(db, ERC721_CONTRACT, "ERC721")
    reply = call({"action": "discovery-stats"})
    assert reply["status"] == 200
    assert reply["body"]["action"] == "discovery-stats"
    assert reply["body"]["result"]["totalCollections"] == 1
    assert reply["body"]["result"]["collections"][0]["contractAddress"] == ERC721_CONTRACT


def test_sync_loads_owners_from_alchemy_with_events(env: MotoBus, db: Conn) -> None:
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 0, %s)", (collection, STRANGER)
    )
    reply = call({"action": "sync", "contractAddress": ERC721_CONTRACT.upper().replace("0X", "0x")})
    assert reply["status"] == 200
    result = reply["body"]["result"]
    assert result["rowsHeld"] == 10_000
    assert result["rowsDeleted"] == 1
    assert result["ownersListed"] == len(distinct_owners(ERC721_CONTRACT))
    rows = ownership(db)
    assert len(rows) == 10_000
    assert (ERC721_CONTRACT, 0, next(iter(token_holders(ERC721_CONTRACT)["0"]))) in rows
    kinds = [kind for kind, _ in outbox(db)]
    assert kinds[0] == "collection.updated"
    assert "ownership.changed" in kinds
    changed = {w for kind, detail in outbox(db) if kind == "ownership.changed" for w in detail["wallets"]}
    assert STRANGER in changed


def test_sync_of_unknown_collection_is_404(env: MotoBus) -> None:
    reply = call({"action": "sync", "contractAddress": address(0xF00)})
    assert reply["status"] == 404
    assert reply["body"]["code"] == "collection_not_found"


def test_verify_runs_a_small_batch(env: MotoBus, db: Conn) -> None:
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 2, %s)", (collection, STRANGER)
    )
    reply = call({"action": "verify", "contractAddress": ERC721_CONTRACT})
    assert reply["status"] == 200
    assert reply["body"]["result"] == {
        "checked": 1,
        "corrected": 1,
        "unchanged": 0,
        "failed": 0,
        "skipped": 0,
        "walletsChanged": 2,
        "stoppedEarly": False,
    }
    assert ownership(db) == {(ERC721_CONTRACT, 2, next(iter(token_holders(ERC721_CONTRACT)["2"]))): 1}
