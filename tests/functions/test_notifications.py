"""Sending notifications through the handlers, against a local notification-client stub: transfers become
one notification per user (bursts too), announcements are batched by 100, Farcaster's limits are kept,
invalid tokens are disabled, rate-limited and failed sends are retried later, nothing is sent twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import admin_notifications
import notify_transfers
import pytest
import send_notifications

from local.neynar_stub import wallet_address
from local.notification_stub import NotificationClientStub
from such_market.container import close_all
from such_market.events.models import NftTransferred
from such_market.notifications.service import record_transfer_news
from such_market.notifications.signatures import sign
from such_market.notifications.writes import enable_token
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, load_event
from tests.functions.test_miniapp_webhook import enabled, envelope
from tests.functions.test_miniapp_webhook import post as post_event
from tests.integration.ownership_helpers import Conn, address, new_collection

C721 = "0x5a4d000000000000000000000000000000000721"
BOB = address(0xB0B)


@pytest.fixture(scope="module")
def client_stub_server() -> Iterator[NotificationClientStub]:
    with NotificationClientStub() as stub:
        yield stub


@pytest.fixture
def client_stub(client_stub_server: NotificationClientStub) -> NotificationClientStub:
    return client_stub_server.reset()


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus, monkeypatch: pytest.MonkeyPatch) -> MotoBus:
    monkeypatch.setenv("NOTIFICATION_DIGEST_SECONDS", "0")
    close_all()
    return moto_bus


def subscribe(fid: int, token: str, stub: NotificationClientStub) -> None:
    """fid turns notifications on in the stub client (a signed event through the webhook)."""
    assert post_event(envelope(fid, enabled(token, stub.url)))["status"] == 200


def transferred(
    *, to: str, sender: str = BOB, token_id: int = 635, event_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    detail = NftTransferred(
        event_id=event_id or str(uuid.uuid4()),
        contract_address=C721,
        token_id=str(token_id),
        from_=sender,
        to=to,
        block_number=extra.get("block", 100),
        tx_hash="0x" + f"{token_id:064x}",
        log_index=extra.get("log_index", 0),
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "nft.transferred",
        "source": "such-market",
        "account": "123456789012",
        "time": "2026-11-25T20:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": json.loads(detail.dump_json()),
    }


def run_sender() -> dict[str, Any]:
    result: dict[str, Any] = send_notifications.lambda_handler(load_event("send_notifications"), FakeContext())  # type: ignore[arg-type]
    return result


def admin_send(body: dict[str, Any] | bytes, event: str = "admin_notifications") -> dict[str, Any]:
    request = load_event(event)
    request["body"] = body.decode() if isinstance(body, bytes) else json.dumps(body)
    response = admin_notifications.lambda_handler(request, FakeContext())  # type: ignore[arg-type]
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


def announcement(**fields: Any) -> dict[str, Any]:
    return {"title": "Hello", "body": "Something new in such-market", "targetUrl": "https://such.market/new", **fields}


def time_passes(db: Conn, seconds: int, stub: NotificationClientStub) -> None:
    """Move every notification clock ``seconds`` into the past (as if that much time passed), the client's too."""
    stub.advance(seconds)
    shift = {"s": seconds}
    db.execute(
        "UPDATE notification_tokens SET last_used_at = last_used_at - make_interval(secs => %(s)s),"
        " rate_limited_until = rate_limited_until - make_interval(secs => %(s)s),"
        " day_started_at = day_started_at - make_interval(secs => %(s)s)",
        shift,
    )
    db.execute(
        "UPDATE notification_deliveries SET next_attempt_at = next_attempt_at - make_interval(secs => %(s)s)", shift
    )
    db.execute("UPDATE notification_url_backoff SET until = until - make_interval(secs => %(s)s)", shift)


@pytest.fixture
def punks(db: Conn) -> None:
    collection = new_collection(db, C721, "ERC721")
    db.execute("INSERT INTO nfts (collection_id, token_id, title) VALUES (%s, 635, 'Punk #635')", (collection,))


# -- transfers -------------------------------------------------------------------------------------------
def test_a_transfer_to_a_users_wallet_is_one_notification_with_the_right_text(
    env: MotoBus, db: Conn, punks: None, client_stub: NotificationClientStub
) -> None:
    # Given fid 3 turned notifications on (their verified wallet is the stub's wallet 3)
    subscribe(3, "tok-3", client_stub)
    # When token 635 is transferred to that wallet, and the event is delivered twice
    event = transferred(to=wallet_address(3))
    notify_transfers.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    notify_transfers.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    report = run_sender()
    # Then the user sees exactly one notification, saying what happened and linking to the token
    shown = client_stub.shown_to("tok-3")
    assert len(shown) == 1
    assert shown[0].title == "NFT received"
    assert shown[0].body == f"You received Punk #635 from {BOB[:6]}…{BOB[-4:]}."
    assert shown[0].target_url == f"https://such.market/collection/{C721}/635"
    assert shown[0].notification_id == f"transfer-{event['detail']['eventId']}-3"
    assert report["sent"] == 1
    # And a redelivery that gets past the consumer's idempotency (e.g. after its records expired) adds nothing
    detail = NftTransferred.model_validate(event["detail"])
    assert record_transfer_news(conn=db, detail=detail, collect_seconds=0) == {"recipients": 1, "recorded": 0}
    assert run_sender()["sent"] == 0
    assert len(client_stub.requests) == 1


def test_the_sender_is_told_too_and_reorg_reversals_are_not_news(
    env: MotoBus, db: Conn, punks: None, client_stub: NotificationClientStub
) -> None:
    subscribe(3, "tok-3", client_stub)
    reversal = transferred(sender=wallet_address(3), to=BOB)
    reversal["detail"]["removed"] = True
    notify_transfers.lambda_handler(reversal, FakeContext())  # type: ignore[arg-type]
    run_sender()
    assert client_stub.shown == []
    notify_transfers.lambda_handler(transferred(sender=wallet_address(3), to=BOB), FakeContext())  # type: ignore[arg-type]
    run_sender()
    [shown] = client_stub.shown_to("tok-3")
    assert (shown.title, shown.body) == ("NFT sent", f"Your Punk #635 was transferred to {BOB[:6]}…{BOB[-4:]}.")


def test_a_burst_of_500_tokens_in_one_block_is_one_notification(
    env: MotoBus, db: Conn, punks: None, client_stub: NotificationClientStub
) -> None:
    subscribe(3, "tok-3", client_stub)
    subscribe(4, "tok-4", client_stub)  # someone else, not concerned
    for token_id in range(1, 501):
        event = transferred(to=wallet_address(3), token_id=token_id, log_index=token_id)
        notify_transfers.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    run_sender()
    [shown] = client_stub.shown_to("tok-3")
    assert (shown.title, shown.body) == ("You received 500 NFTs", "You received 500 NFTs of ERC721 test.")
    assert shown.target_url == f"https://such.market/collection/{C721}"
    assert client_stub.shown_to("tok-4") == []
    assert len(client_stub.requests) == 1


# -- announcements ----------------------------------------------------------------------------------------
def test_announcements_go_in_batches_of_at_most_100_tokens_per_client_url(
    env: MotoBus, db: Conn, client_stub: NotificationClientStub
) -> None:
    for fid in range(1001, 1151):
        enable_token(conn=db, fid=fid, url=client_stub.url, token=f"tok-{fid}", app_fid=9152)
    reply = admin_send(announcement())
    assert reply["status"] == 200
    assert reply["body"]["recipients"] == 150
    assert reply["body"]["tokens"] == 150
    assert reply["body"]["deliveries"] == {"sent": 150, "pending": 0, "invalid": 0, "failed": 0, "expired": 0}
    assert sorted(len(request["tokens"]) for request in client_stub.requests) == [50, 100]
    assert len({request["notificationId"] for request in client_stub.requests}) == 1
    assert len(client_stub.shown) == 150


def test_only_the_given_fids_get_an_announcement(env: MotoBus, db: Conn, client_stub: NotificationClientStub) -> None:
    for fid in (1, 2, 3):
        enable_token(conn=db, fid=fid, url=client_stub.url, token=f"tok-{fid}", app_fid=9152)
    reply = admin_send(announcement(fids=[2, 3, 77]))
    assert reply["body"]["recipients"] == 2
    assert sorted(shown.token for shown in client_stub.shown) == ["tok-2", "tok-3"]


def test_invalid_tokens_are_disabled_at_once_and_rate_limited_ones_retried_later(
    env: MotoBus, db: Conn, client_stub: NotificationClientStub
) -> None:
    enable_token(conn=db, fid=1, url=client_stub.url, token="tok-ok", app_fid=9152)
    enable_token(conn=db, fid=2, url=client_stub.url, token="tok-invalid", app_fid=9152)
    enable_token(conn=db, fid=3, url=client_stub.url, token="tok-limited", app_fid=9152)
    client_stub.invalid_tokens.add("tok-invalid")
    client_stub.rate_limited_tokens.add("tok-limited")
    reply = admin_send(announcement())
    assert reply["body"]["deliveries"] == {"sent": 1, "pending": 1, "invalid": 1, "failed": 0, "expired": 0}
    disabled = db.execute("SELECT enabled, disabled_reason FROM notification_tokens WHERE token = 'tok-invalid'")
    assert disabled.fetchone() == (False, "invalid_token")
    # The rate-limited token is held: an immediate run sends it nothing (no spam)
    requests = len(client_stub.requests)
    assert run_sender()["requests"] == 0
    assert len(client_stub.requests) == requests
    # Later, once the client takes it again, it is delivered (not lost), with the same notification id
    client_stub.rate_limited_tokens.clear()
    time_passes(db, 3600, client_stub)
    assert run_sender()["sent"] == 1
    [shown] = client_stub.shown_to("tok-limited")
    assert shown.notification_id == reply["body"]["notificationId"]
    attempts = db.execute("SELECT outcome, successful, invalid, rate_limited FROM notification_attempts ORDER BY id")
    assert attempts.fetchall() == [("answered", 1, 1, 1), ("answered", 1, 0, 0)]


def test_the_per_token_limits_are_respected(env: MotoBus, db: Conn, client_stub: NotificationClientStub) -> None:
    enable_token(conn=db, fid=1, url=client_stub.url, token="tok-1", app_fid=9152)
    # Two announcements in a row: the second waits out the 30 s between notifications of one token
    assert admin_send(announcement(title="First"))["body"]["deliveries"]["sent"] == 1
    second = admin_send(announcement(title="Second"))
    assert second["body"]["deliveries"]["pending"] == 1
    assert len(client_stub.requests) == 1  # the client never had to refuse us
    time_passes(db, 31, client_stub)
    assert run_sender()["sent"] == 1
    assert [shown.title for shown in client_stub.shown_to("tok-1")] == ["First", "Second"]
    # A token that had its 100 notifications today gets nothing more until the day is over
    db.execute("UPDATE notification_tokens SET day_count = 100, last_used_at = now() - interval '1 hour'")
    assert admin_send(announcement(title="Third"))["body"]["deliveries"]["pending"] == 1
    time_passes(db, 86_400, client_stub)
    assert run_sender()["sent"] == 1


def test_client_failures_are_retried_with_backoff_and_recorded(
    env: MotoBus, db: Conn, client_stub: NotificationClientStub
) -> None:
    enable_token(conn=db, fid=1, url=client_stub.url, token="tok-1", app_fid=9152)
    client_stub.fail_next(2, 503)  # both attempts of the request
    reply = admin_send(announcement())
    assert reply["body"]["deliveries"]["pending"] == 1
    row = db.execute(
        "SELECT attempts, last_outcome, next_attempt_at > now() + interval '20 seconds' FROM notification_deliveries"
    ).fetchone()
    assert row == (1, "client unavailable", True)
    assert run_sender()["requests"] == 0  # not before its backoff
    time_passes(db, 3600, client_stub)
    assert run_sender()["sent"] == 1
    assert len(client_stub.shown_to("tok-1")) == 1
    outcomes = db.execute("SELECT outcome, status FROM notification_attempts ORDER BY id").fetchall()
    assert outcomes == [("unavailable", 503), ("answered", 200)]


# -- the admin route -------------------------------------------------------------------------------------
def test_admin_send_needs_the_admin_token(env: MotoBus, db: Conn) -> None:
    assert admin_send(announcement(), "admin_notifications_no_token")["status"] == 401
    assert admin_send(announcement(), "admin_notifications_wrong_token")["status"] == 403


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        announcement(title="x" * 33),
        announcement(body="x" * 129),
        announcement(targetUrl="https://evil.example/such.market"),
        announcement(targetUrl="http://such.market/new"),
        announcement(targetUrl="https://such.market/" + "x" * 1024),
        announcement(title="a\x00b"),
        announcement(targetUrl="https://such.market/\x00"),
        announcement(fids=[]),
        announcement(fids=[0]),
        announcement(fids=["1"]),
        {"title": "Hello"},
    ],
)
def test_admin_send_refuses_what_farcaster_would(env: MotoBus, db: Conn, body: dict[str, Any] | bytes) -> None:
    reply = admin_send(body)
    assert reply["status"] == 400
    assert set(reply["body"]) == {"error", "code"}
    assert db.execute("SELECT count(*) FROM notifications").fetchone() == (0,)


def test_signed_event_helper_round_trips() -> None:
    # The sample event is what local.send_miniapp_event sends: a signature over header.payload
    sample = json.loads(load_event("miniapp_webhook")["body"])
    assert set(sample) == {"header", "payload", "signature"}
    assert sign(fid=1, private_key=bytes(32), payload={"event": "miniapp_removed"})["header"]
