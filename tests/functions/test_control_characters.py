"""Every text input refuses control characters with a 400 in the error shape (``such_market.validation``):
path and query parameters, the JSON bodies of the admin routes and the strings of Alchemy's webhook that
reach SQL or cache keys. A NUL used to reach PostgreSQL (``psycopg.DataError``: a 500)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SIGNING_KEY, MotoBus
from tests.functions.conftest import Reply

A = "0x" + "5e" * 20
Api = Callable[..., Reply]
BEARER = [("Authorization", f"Bearer {ADMIN_TOKEN}")]


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus) -> None:
    """The functions' environment with a mocked bus (nothing leaves the process)."""


@pytest.mark.parametrize(
    "target",
    [
        # path parameters
        f"/api/collection/{A}%00",
        f"/api/collection/%00{A[1:]}/nfts",
        f"/api/collection/{A}/nfts/1%00",
        f"/api/collection/{A}/nfts/1%0A/owner",
        "/api/profile/1%00",
        "/api/verifications/%017",
        "/api/nft-contracts/7%7F",
        "/api/nft-contracts/7%00/normalized",
        # query parameters
        f"/api/collection/{A}/nfts?page=1%00",
        f"/api/collection/{A}/nfts?pageSize=2%09",
        f"/api/collection/{A}/nfts?cursor=dDoxMA%00",
        f"/api/collection/{A}/nfts?trait.Hat=%00",
        f"/api/collection/{A}/nfts?trait.%00=x",
        f"/api/collection/{A}/nfts?trait.Hat=Cap%1FCrown",
        f"/api/collection/{A}/nfts?trait.H%7Fat=Cap",
        f"/api/collection/{A}/nfts?trait.Hat=Cap%C2%85",
        f"/api/collection/{A}/nfts?trait.Hat=Cap%0D%0A",
        f"/api/collection/{A}/nfts/owned?userAddress={A}%00",
    ],
)
def test_a_control_character_in_a_parameter_is_400(env: None, api: Api, target: str) -> None:
    reply = api("GET", target)
    assert reply.status == 400, reply.body
    assert set(reply.body) == {"error", "code"}


def test_a_control_character_in_an_admin_query_parameter_is_400(env: None, api: Api) -> None:
    reply = api("GET", "/api/admin/cache/metrics?window=15m%00", BEARER)
    assert (reply.status, set(reply.body)) == (400, {"error", "code"})


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/admin/cache/clear", {"scope": "all\u0000"}),
        ("/api/admin/cache/clear", {"scope": "collection", "contractAddress": A + "\u0000"}),
        ("/api/admin/cache/clear", {"scope": "wallet", "walletAddress": "\u0001" + A}),
        ("/api/admin/cache/clear", {"scope": "all", "\u0000": 1}),
        ("/api/admin/cache/metrics", {"action": "reset\u0000"}),
        ("/api/admin/cache/metrics", {"action": "resolve-alert", "alertId": "hit-rate\u0000"}),
        ("/api/admin/ownership/stats", {"action": "sync", "contractAddress": A + "\u001b"}),
        ("/api/admin/ownership/stats", {"action": "verify\u0000"}),
        ("/api/admin/ownership/stats", {"action": "verify", "junk": ["\u0007"]}),
        ("/api/admin/notifications/send", {"title": "Hi\u0000", "body": "x", "targetUrl": "https://such.market/"}),
        ("/api/admin/notifications/send", {"title": "Hi", "body": "x\u0085", "targetUrl": "https://such.market/"}),
    ],
)
def test_a_control_character_in_an_admin_body_is_400(env: None, api: Api, route: str, body: dict[str, Any]) -> None:
    reply = api("POST", route, [*BEARER, ("Content-Type", "application/json")], json.dumps(body).encode())
    assert reply.status == 400, reply.body
    assert set(reply.body) == {"error", "code"}


def _signed(payload: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
    body = json.dumps(payload).encode()
    signature = hmac.new(WEBHOOK_SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    return [("Content-Type", "application/json"), ("X-Alchemy-Signature", signature)], body


def test_a_control_character_in_the_webhook_id_is_400(env: None, api: Api) -> None:
    activity = {
        "fromAddress": "0x" + "00" * 20,
        "toAddress": A,
        "contractAddress": A,
        "category": "erc721",
        "erc721TokenId": "0x1",
        "log": {"blockNumber": "0x10", "transactionHash": "0x" + "ab" * 32, "logIndex": "0x1", "removed": False},
    }
    payload = {"webhookId": "wh_1", "id": "whevt\u00001", "type": "NFT_ACTIVITY", "event": {"activity": [activity]}}
    reply = api("POST", "/api/webhooks/alchemy", *_signed(payload))
    assert (reply.status, reply.body["code"]) == (400, "invalid_payload")


def test_a_control_character_elsewhere_in_a_webhook_activity_skips_only_that_activity(env: None, api: Api) -> None:
    activity = {"fromAddress": "0x" + "00" * 20, "toAddress": A + "\u0000", "contractAddress": A, "category": "erc721"}
    payload = {"webhookId": "wh_1", "id": "whevt_2", "type": "NFT_ACTIVITY", "event": {"activity": [activity]}}
    reply = api("POST", "/api/webhooks/alchemy", *_signed(payload))
    assert (reply.status, reply.body["ignored"]) == (200, 1)
