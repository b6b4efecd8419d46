"""One account cannot stall everyone's notifications, and our own limits hold at their exact boundaries.

What is asserted is what OUR sender did: the requests it made and the tokens it put in them (a recording
transport, or a TCP listener counting connections), and what it stored — never only what a stub accepted.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.notification_stub import NotificationClientStub
from such_market.notifications.client import NotificationClient
from such_market.notifications.rules import MAX_CLIENT_URLS_PER_FID, TOKEN_DAILY_LIMIT, Message
from such_market.notifications.sending import SendReport, send_due
from such_market.notifications.writes import create_announcement, enable_token, queue_notification
from tests.conftest import MotoBus
from tests.functions.test_miniapp_webhook import enabled, envelope
from tests.functions.test_miniapp_webhook import post as post_event
from tests.integration.ownership_helpers import Conn

MESSAGE = Message("Hello", "Something new", "https://such.market/new")


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; counts connections."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = int(self.socket.getsockname()[1])
        self.held: list[socket.socket] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def announce(db: Conn) -> int:
    with db.transaction():
        pk = create_announcement(conn=db, notification_id=f"announcement-{id(db)}-{db.info.backend_pid}-x")
        db.execute("UPDATE notifications SET notification_id = 'announcement-' || id WHERE id = %s", (pk,))
        queue_notification(conn=db, pk=pk, message=MESSAGE, fids=None)
    return pk


def day_counts(db: Conn) -> dict[str, tuple[int, bool]]:
    rows = db.execute("SELECT token, day_count, last_used_at IS NOT NULL FROM notification_tokens").fetchall()
    return {str(token): (int(count), bool(used)) for token, count, used in rows}


# -- item 6: one account cannot stall the others -----------------------------------------------------------
def test_a_fid_keeps_a_bounded_number_of_client_urls(lambda_env: dict[str, str], moto_bus: MotoBus, db: Conn) -> None:
    # When fid 6 registers 8 client URLs through signed events
    for index in range(8):
        assert post_event(envelope(6, enabled(f"tok-{index}", f"https://c{index}.example/n")))["status"] == 200
    # Then only the newest MAX_CLIENT_URLS_PER_FID stay enabled; the older are superseded
    rows = db.execute(
        "SELECT token, enabled, disabled_reason FROM notification_tokens WHERE fid = 6 ORDER BY id"
    ).fetchall()
    assert MAX_CLIENT_URLS_PER_FID == 4
    assert rows == [(f"tok-{i}", False, "superseded") for i in range(4)] + [
        (f"tok-{i}", True, None) for i in range(4, 8)
    ]


def test_exactly_the_bound_is_kept_and_one_more_supersedes_the_oldest(db: Conn) -> None:
    for index in range(MAX_CLIENT_URLS_PER_FID):
        assert enable_token(conn=db, fid=7, url=f"https://c{index}.example/n", token=f"t{index}", app_fid=9) == 0
    assert db.execute("SELECT count(*) FROM notification_tokens WHERE enabled").fetchone() == (MAX_CLIENT_URLS_PER_FID,)
    assert enable_token(conn=db, fid=7, url="https://late.example/n", token="late", app_fid=9) == 1
    assert db.execute("SELECT token FROM notification_tokens WHERE NOT enabled").fetchall() == [("t0",)]


def test_urls_that_never_answer_do_not_stall_other_users(db: Conn, silent: SilentServer) -> None:
    # Given fid 66's 4 client URLs lead to a server that accepts and never answers (sorted first: 127.0.0.1),
    # and three other users are on a client that answers (127.0.0.2)
    with NotificationClientStub(host="127.0.0.2") as good:
        for index in range(MAX_CLIENT_URLS_PER_FID):
            enable_token(
                conn=db, fid=66, url=f"http://127.0.0.1:{silent.port}/n{index}", token=f"slow-{index}", app_fid=9
            )
        for fid in (1, 2, 3):
            enable_token(conn=db, fid=fid, url=good.url, token=f"tok-{fid}", app_fid=9)
        announce(db)
        # Timeouts that, one request after another, would outlast the whole run
        client = NotificationClient(
            allow_local_stub=True, request_attempts=2, connect_timeout_seconds=2, read_timeout_seconds=2
        )

        def run() -> SendReport:
            return send_due(
                conn=db, client=client, base_url="https://such.market", max_delivery_attempts=8, time_budget_seconds=3.0
            )

        run()
        # Then the other users got their notification in the same run
        assert sorted(shown.token for shown in good.shown) == ["tok-1", "tok-2", "tok-3"]
        # And only what was sent counts against a token's limits
        counts = day_counts(db)
        assert {token: counts[token] for token in ("tok-1", "tok-2", "tok-3")} == dict.fromkeys(
            ("tok-1", "tok-2", "tok-3"), (1, True)
        )
        assert {token: counts[token] for token in counts if token.startswith("slow-")} == dict.fromkeys(
            (f"slow-{i}" for i in range(4)), (0, False)
        )
        # The slow URLs are backed off: their deliveries stay pending (not lost), unleased, and the next run
        # does not connect to them again
        pending = db.execute(
            "SELECT count(*) FROM notification_deliveries AS d JOIN notification_tokens AS t ON t.id = d.token_pk"
            " WHERE d.state = 'pending' AND t.token LIKE 'slow-%%' AND t.claimed_until IS NULL"
        ).fetchone()
        assert pending == (4,)
        backed_off = db.execute("SELECT count(*) FROM notification_url_backoff WHERE until > now()").fetchone()
        assert backed_off == (4,)
        connections = silent.connections
        assert run().requests == 0
        assert silent.connections == connections


# -- item 13: our limits at exactly the boundary and one past ----------------------------------------------
class Recorder:
    """A transport that answers every token successful and records what our sender put in each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return httpx.Response(200, json={"result": {"successfulTokens": body["tokens"]}})

    def tokens(self) -> list[list[str]]:
        return [request["tokens"] for request in self.requests]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def send(db: Conn, recorder: Recorder) -> SendReport:
    client = NotificationClient(transport=httpx.MockTransport(recorder), sleep=lambda _: None)
    return send_due(
        conn=db, client=client, base_url="https://such.market", max_delivery_attempts=8, time_budget_seconds=10
    )


def test_the_daily_limit_sends_the_100th_and_withholds_the_101st(db: Conn, recorder: Recorder) -> None:
    enable_token(conn=db, fid=1, url="https://c.example/n", token="tok", app_fid=9)
    db.execute(
        "UPDATE notification_tokens SET day_count = %s, day_started_at = now() - interval '1 hour',"
        " last_used_at = now() - interval '1 hour'",
        (TOKEN_DAILY_LIMIT - 1,),
    )
    # The 100th notification of the day is sent, and counted
    announce(db)
    assert send(db, recorder).requests == 1
    assert recorder.tokens() == [["tok"]]
    assert day_counts(db)["tok"] == (TOKEN_DAILY_LIMIT, True)
    # The 101st is not sent at all, however long the 30 s interval has passed
    db.execute("UPDATE notification_tokens SET last_used_at = now() - interval '1 hour'")
    announce(db)
    assert send(db, recorder).requests == 0
    assert recorder.tokens() == [["tok"]]
    assert day_counts(db)["tok"] == (TOKEN_DAILY_LIMIT, True)
    # Once the day is over, it goes, and the count starts again
    db.execute("UPDATE notification_tokens SET day_started_at = now() - interval '1 day 1 minute'")
    assert send(db, recorder).requests == 1
    assert day_counts(db)["tok"] == (1, True)


@pytest.mark.parametrize(("seconds_ago", "sent"), [(28, False), (32, True)])
def test_the_30_second_interval_between_notifications_of_a_token(
    db: Conn, recorder: Recorder, seconds_ago: int, sent: bool
) -> None:
    enable_token(conn=db, fid=1, url="https://c.example/n", token="tok", app_fid=9)
    db.execute(
        "UPDATE notification_tokens SET day_count = 1, day_started_at = now() - interval '1 hour',"
        " last_used_at = now() - make_interval(secs => %s)",
        (seconds_ago,),
    )
    announce(db)
    assert send(db, recorder).requests == int(sent)
    assert recorder.tokens() == ([["tok"]] if sent else [])


@pytest.mark.parametrize(("tokens", "sizes"), [(100, [100]), (101, [100, 1]), (201, [100, 100, 1])])
def test_requests_carry_at_most_100_tokens(db: Conn, recorder: Recorder, tokens: int, sizes: list[int]) -> None:
    for fid in range(1, tokens + 1):
        enable_token(conn=db, fid=fid, url="https://c.example/n", token=f"tok-{fid}", app_fid=9)
    announce(db)
    report = send(db, recorder)
    assert sorted((len(batch) for batch in recorder.tokens()), reverse=True) == sizes
    assert report.sent == tokens
    assert sorted(token for batch in recorder.tokens() for token in batch) == sorted(
        f"tok-{fid}" for fid in range(1, tokens + 1)
    )
