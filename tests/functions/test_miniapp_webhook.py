"""POST /api/webhook through its handler: signature vectors, the app-key check, the token lifecycle, replays."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import miniapp_webhook
import pytest

from local.neynar_stub import CLIENT_APP_FID, NeynarStub, app_private_key, wallet_address
from such_market.container import close_all
from such_market.notifications.app_keys import LOOKUPS_PER_FID, LOOKUPS_PER_SOURCE
from such_market.notifications.signatures import sign
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, load_event
from tests.integration.ownership_helpers import Conn

CLIENT_URL = "https://api.farcaster.xyz/v1/frame-notifications"


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus) -> MotoBus:
    return moto_bus


def envelope(fid: int, payload: dict[str, Any], *, key_of: int | None = None) -> dict[str, str]:
    return sign(fid=fid, private_key=app_private_key(key_of or fid), payload=payload)


def enabled(token: str, url: str = CLIENT_URL) -> dict[str, Any]:
    return {"event": "notifications_enabled", "notificationDetails": {"url": url, "token": token}}


def post(body: bytes | dict[str, Any], *, base64_encoded: bool = False) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event = load_event("miniapp_webhook")
    event["body"] = base64.b64encode(raw).decode() if base64_encoded else raw.decode()
    event["isBase64Encoded"] = base64_encoded
    response: dict[str, Any] = miniapp_webhook.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


def tokens(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT fid, url, token, app_fid, enabled, disabled_reason FROM notification_tokens ORDER BY fid, url"
    ).fetchall()


def stored_nothing(db: Conn) -> bool:
    counts = db.execute(
        "SELECT (SELECT count(*) FROM notification_tokens), (SELECT count(*) FROM notification_webhook_events)"
    ).fetchone()
    return counts == (0, 0)


def flip(text: str) -> str:
    """``text`` (base64url) with its first character changed: still base64url, different bytes."""
    return ("B" if text[0] != "B" else "C") + text[1:]


def test_a_valid_event_stores_the_token_and_learns_the_users_wallets(env: MotoBus, db: Conn) -> None:
    # When fid 3 turns notifications on in a client
    reply = post(envelope(3, enabled("tok-3")))
    # Then the token is stored for (fid, client url), with the client's app fid from its key's metadata
    assert reply == {
        "status": 200,
        "body": {
            "event": "notifications_enabled",
            "fid": 3,
            "appFid": CLIENT_APP_FID,
            "notificationsEnabled": True,
            "replay": False,
        },
    }
    assert tokens(db) == [(3, CLIENT_URL, "tok-3", CLIENT_APP_FID, True, None)]
    # And the user's verified wallets are known, so their transfers can reach them
    row = db.execute("SELECT verified_eth_addresses FROM fc_users WHERE fid = 3").fetchone()
    assert row is not None
    assert wallet_address(3) in row[0]


def test_base64_bodies_and_legacy_frame_event_names_are_accepted(env: MotoBus, db: Conn) -> None:
    payload = {"event": "frame_added", "notificationDetails": {"url": CLIENT_URL, "token": "tok"}}
    reply = post(json.dumps(envelope(4, payload)).encode(), base64_encoded=True)
    assert reply["status"] == 200
    assert reply["body"]["event"] == "miniapp_added"
    assert tokens(db) == [(4, CLIENT_URL, "tok", CLIENT_APP_FID, True, None)]


def test_tampered_header_is_401(env: MotoBus, db: Conn) -> None:
    signed = envelope(3, enabled("tok"))
    other_header = envelope(5, enabled("tok"))["header"]  # a valid header of another fid
    reply = post({**signed, "header": other_header})
    assert reply == {"status": 401, "body": {"error": "the signature does not verify", "code": "invalid_signature"}}
    assert stored_nothing(db)


def test_tampered_payload_is_401(env: MotoBus, db: Conn) -> None:
    signed = envelope(3, enabled("tok"))
    other_payload = envelope(3, enabled("attacker-token", "https://evil.example/notify"))["payload"]
    assert post({**signed, "payload": other_payload})["status"] == 401
    assert post({**signed, "payload": flip(signed["payload"])})["status"] == 401
    assert stored_nothing(db)


def test_a_signature_by_another_key_is_401(env: MotoBus, db: Conn) -> None:
    # The header names fid 3's key, but the signature was made with fid 4's key
    signed = envelope(3, enabled("tok"))
    forged = sign(fid=3, private_key=app_private_key(4), payload=enabled("tok"))
    reply = post({**signed, "signature": forged["signature"]})
    assert reply["body"]["code"] == "invalid_signature"
    assert reply["status"] == 401
    assert stored_nothing(db)


def test_a_key_that_is_not_an_app_key_of_the_fid_is_401(env: MotoBus, db: Conn, neynar_stub: NeynarStub) -> None:
    # Correctly signed, but with fid 4's key while claiming to be fid 3 (and a fid Neynar does not know)
    reply = post(envelope(3, enabled("tok"), key_of=4))
    assert reply == {
        "status": 401,
        "body": {"error": "the signing key is not an active app key of the fid", "code": "invalid_app_key"},
    }
    assert post(envelope(999, enabled("tok")))["body"]["code"] == "invalid_app_key"
    assert stored_nothing(db)
    # And Neynar's answer is kept briefly: asking again does not ask Neynar again
    before = neynar_stub.request_count("onChainSignersByFid")
    assert post(envelope(3, enabled("tok"), key_of=4))["status"] == 401
    assert neynar_stub.request_count("onChainSignersByFid") == before


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"header": "x", "payload": "y"}',
        b'{"header": 1, "payload": "eyJ9", "signature": "AAAA"}',
        b'{"header": "!!!", "payload": "eyJ9", "signature": "AAAA"}',
    ],
    ids=["empty", "not-json", "array", "no-signature", "header-not-text", "not-base64url"],
)
def test_malformed_envelopes_are_400(env: MotoBus, db: Conn, body: bytes) -> None:
    reply = post(body)
    assert reply["status"] == 400
    assert reply["body"]["code"] == "invalid_envelope"
    assert stored_nothing(db)


def test_a_header_that_is_not_an_app_key_header_is_401_and_a_short_signature_400(env: MotoBus, db: Conn) -> None:
    # What the signed parts say is unauthenticated: a header that names no app key cannot be verified (401);
    # the envelope's shape, a 64-byte base64url signature included, is what the API document states (400)
    signed = envelope(3, enabled("tok"))

    def header(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    for bad in (
        {**signed, "header": header({"fid": 3, "type": "custody", "key": "0x" + "00" * 32})},
        {**signed, "header": header({"fid": -1, "type": "app_key", "key": "0x" + "00" * 32})},
        {**signed, "header": header({"fid": 3, "type": "app_key", "key": "0x1234"})},
        {**signed, "header": "bm90IGpzb24"},
    ):
        reply = post(bad)
        assert (reply["status"], reply["body"]["code"]) == (401, "invalid_signature")
    reply = post({**signed, "signature": signed["signature"][:40]})
    assert (reply["status"], reply["body"]["code"]) == (400, "invalid_envelope")
    assert stored_nothing(db)


def test_a_verified_payload_that_is_not_an_event_is_400(env: MotoBus, db: Conn) -> None:
    for payload in (
        {"event": "something_else"},
        {"event": "notifications_enabled"},
        {"event": "notifications_enabled", "notificationDetails": {"url": "ftp://files.example/x", "token": "t"}},
        # control characters in any string (they would reach SQL)
        {"event": "notifications_enabled", "notificationDetails": {"url": "https://c.example/n", "token": "t\x00"}},
        {"event": "notifications_enabled", "notificationDetails": {"url": "https://c.example/\x07", "token": "t"}},
        {"event": "notifications_enabled\x1b"},
    ):
        reply = post(envelope(3, payload))
        assert (reply["status"], reply["body"]["code"]) == (400, "invalid_event"), payload
    assert stored_nothing(db)


def test_token_lifecycle_and_replays(env: MotoBus, db: Conn) -> None:
    # Given fid 3 added the app with notifications
    added = envelope(3, {"event": "miniapp_added", "notificationDetails": {"url": CLIENT_URL, "token": "t1"}})
    assert post(added)["body"]["notificationsEnabled"] is True
    # When they turn notifications off, the client's token is disabled
    disabled = envelope(3, {"event": "notifications_disabled"})
    assert post(disabled)["status"] == 200
    assert tokens(db) == [(3, CLIENT_URL, "t1", CLIENT_APP_FID, False, "notifications_disabled")]
    # A replay of the old "added" is recognized and changes nothing
    replay = post(added)
    assert replay["status"] == 200
    assert replay["body"]["replay"] is True
    assert tokens(db) == [(3, CLIENT_URL, "t1", CLIENT_APP_FID, False, "notifications_disabled")]
    # A later "enabled" re-enables the row with the new token
    assert post(envelope(3, enabled("t2")))["status"] == 200
    assert tokens(db) == [(3, CLIENT_URL, "t2", CLIENT_APP_FID, True, None)]
    # Removing the app disables it again; the same removal again is harmless
    removed = envelope(3, {"event": "miniapp_removed"})
    assert post(removed)["status"] == 200
    assert post(removed)["body"]["replay"] is False
    assert tokens(db) == [(3, CLIENT_URL, "t2", CLIENT_APP_FID, False, "miniapp_removed")]
    events = db.execute("SELECT event FROM notification_webhook_events ORDER BY received_at").fetchall()
    assert [event for (event,) in events] == [
        "miniapp_added",
        "notifications_disabled",
        "notifications_enabled",
        "miniapp_removed",
    ]


@pytest.mark.parametrize("turning_off", ["notifications_disabled", "miniapp_removed", "frame_removed"])
def test_a_second_genuine_opt_out_is_applied_like_the_first(env: MotoBus, db: Conn, turning_off: str) -> None:
    # Given fid 3 turned notifications on and off once
    assert post(envelope(3, enabled("t1")))["status"] == 200
    off = envelope(3, {"event": turning_off})
    assert post(off)["body"]["replay"] is False
    # When they turn them on again (a new token) and off again: signatures are deterministic and the payload
    # has no nonce, so the second opt-out is byte-identical to the first
    assert post(envelope(3, enabled("t2")))["body"]["replay"] is False
    second_off = envelope(3, {"event": turning_off})
    assert second_off == off
    reply = post(second_off)
    # Then it is applied, not taken for a replay: the new token is off and gets nothing more
    assert reply["status"] == 200
    assert reply["body"]["replay"] is False
    reason = "notifications_disabled" if turning_off == "notifications_disabled" else "miniapp_removed"
    assert tokens(db) == [(3, CLIENT_URL, "t2", CLIENT_APP_FID, False, reason)]
    # And a replay of the old enable still cannot revive a token
    replayed = post(envelope(3, enabled("t1")))
    assert replayed["body"]["replay"] is True
    assert tokens(db) == [(3, CLIENT_URL, "t2", CLIENT_APP_FID, False, reason)]


def test_neynar_down_is_503_and_stores_nothing(env: MotoBus, db: Conn, neynar_stub: NeynarStub) -> None:
    neynar_stub.server_error_every = 1
    close_all()
    reply = post(envelope(3, enabled("tok")))
    assert reply["status"] == 503
    assert stored_nothing(db)


def test_app_key_lookups_are_throttled_per_source_ip_and_per_fid(
    env: MotoBus, db: Conn, neynar_stub: NeynarStub
) -> None:
    # Given signed envelopes each with a fresh random key (each misses the per-(fid, key) cache)
    def random_key_envelope(fid: int) -> dict[str, str]:
        return sign(fid=fid, private_key=os.urandom(32), payload=enabled("tok"))

    def post_from(body: dict[str, str], source: str) -> dict[str, Any]:
        event = load_event("miniapp_webhook")
        event["body"] = json.dumps(body)
        event["isBase64Encoded"] = False
        event["requestContext"]["http"]["sourceIp"] = source
        response: dict[str, Any] = miniapp_webhook.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
        return {"status": response["statusCode"], "body": json.loads(response["body"]), "headers": response["headers"]}

    before = neynar_stub.request_count("onChainSignersByFid")
    # When one source IP sends 200 of them, spread over many fids
    replies = [post_from(random_key_envelope(100 + index), "203.0.113.7") for index in range(200)]
    # Then our code asks Neynar only as often as the per-source bucket allows, and answers the rest 429
    lookups = neynar_stub.request_count("onChainSignersByFid") - before
    per_source = LOOKUPS_PER_SOURCE[0]
    assert per_source <= lookups <= per_source + 2  # the bucket refills 0.2 a second while the test runs
    limited = [reply for reply in replies if reply["status"] == 429]
    assert len(limited) == 200 - lookups
    assert limited[0]["body"] == {
        "error": "too many app-key checks; try again shortly",
        "code": "app_key_lookups_rate_limited",
    }
    assert int(limited[0]["headers"]["Retry-After"]) >= 1
    # And one fid's events, from many source IPs, are held to the per-fid bucket
    before = neynar_stub.request_count("onChainSignersByFid")
    replies = [post_from(random_key_envelope(3), f"198.51.100.{index}") for index in range(1, 41)]
    lookups = neynar_stub.request_count("onChainSignersByFid") - before
    assert LOOKUPS_PER_FID[0] <= lookups <= LOOKUPS_PER_FID[0] + 2
    assert sum(reply["status"] == 429 for reply in replies) == 40 - lookups
    assert stored_nothing(db)
