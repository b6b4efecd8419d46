"""PostgreSQL down: every route family answers 503 with ``Retry-After`` (health: 503 with its report),
never a 500, and comes back by itself once the database does.

The database is "down" for real: ``DATABASE_URL`` names a port where nothing listens, so every
connection attempt is refused by the operating system, as it is while RDS restarts. Errors are mapped
once, at the edge; these tests prove every family goes through it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import pytest

from local.alchemy_stub import ERC721_CONTRACT
from local.services import free_port
from such_market.container import close_all
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SIGNING_KEY
from tests.functions.conftest import EVENTS, Reply

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
CONTRACT = ERC721_CONTRACT


def _webhook() -> tuple[tuple[tuple[str, str], ...], bytes]:
    body = json.loads((EVENTS / "alchemy_webhook.json").read_text())["body"].encode()
    signature = hmac.new(WEBHOOK_SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    return (("x-alchemy-signature", signature), ("content-type", "application/json")), body


WEBHOOK_HEADERS, WEBHOOK_BODY = _webhook()
MINIAPP_EVENT = json.loads((EVENTS / "miniapp_webhook.json").read_text())["body"].encode()
ANNOUNCEMENT = json.loads((EVENTS / "admin_notifications.json").read_text())["body"].encode()
JSON = (("content-type", "application/json"),)

Request = tuple[str, str, tuple[tuple[str, str], ...], bytes]
"""Method, target, headers and body of one request."""

ROUTES = [
    pytest.param(("GET", f"/api/collection/{CONTRACT}", (), b""), id="collections-metadata"),
    pytest.param(("GET", f"/api/collection/{CONTRACT}/nfts?pageSize=5", (), b""), id="collections-page"),
    pytest.param(("GET", f"/api/collection/{CONTRACT}/traits", (), b""), id="collections-traits"),
    pytest.param(("GET", f"/api/collection/{CONTRACT}/nfts/1", (), b""), id="collections-nft"),
    pytest.param(("GET", f"/api/collection/{CONTRACT}/nfts/1/owner", (), b""), id="collections-owner"),
    pytest.param(("GET", f"/api/collection/{CONTRACT}/refresh", (), b""), id="refresh-status"),
    pytest.param(("POST", f"/api/collection/{CONTRACT}/refresh", (), b""), id="refresh-request"),
    pytest.param(("GET", "/api/profile/1", (), b""), id="users-profile"),
    pytest.param(("GET", "/api/verifications/1", (), b""), id="users-verifications"),
    pytest.param(("GET", "/api/nft-contracts/1", (), b""), id="users-nft-contracts"),
    pytest.param(("GET", "/api/nft-contracts/1/normalized", (), b""), id="users-normalized"),
    pytest.param(("GET", "/api/admin/ownership/stats", ADMIN, b""), id="admin-ownership-stats"),
    pytest.param(
        ("POST", "/api/admin/ownership/stats", ADMIN, b'{"action": "discovery-stats"}'), id="admin-ownership-action"
    ),
    pytest.param(("POST", "/api/webhooks/alchemy", WEBHOOK_HEADERS, WEBHOOK_BODY), id="webhook"),
    pytest.param(("POST", "/api/webhook", JSON, MINIAPP_EVENT), id="miniapp-webhook"),
    pytest.param(("POST", "/api/admin/notifications/send", ADMIN, ANNOUNCEMENT), id="admin-notifications-send"),
]


@pytest.fixture
def database_down(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Point every function at a database that refuses connections; returns a function that brings it back."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    close_all()

    def recover() -> None:
        monkeypatch.setenv("DATABASE_URL", lambda_env["DATABASE_URL"])
        close_all()

    return recover


@pytest.mark.parametrize("request_", ROUTES)
def test_every_route_family_answers_503_with_retry_after(
    api: Callable[..., Reply], database_down: Callable[[], None], request_: Request
) -> None:
    # When a route that needs the database is called while it is down
    reply = api(*request_)
    # Then it is a 503 in the error shape, with Retry-After, naming the database and nothing internal
    assert reply.status == 503, reply.body
    assert reply.body == {"error": "the database is unavailable, try again shortly", "code": "service_unavailable"}
    assert int(reply.headers["retry-after"]) > 0


def test_health_reports_the_database_and_recovers(api: Callable[..., Reply], database_down: Callable[[], None]) -> None:
    down = api("GET", "/api/health")
    assert (down.status, down.body["database"]["status"], down.body["cache"]["status"]) == (503, "unavailable", "ok")
    database_down()
    assert api("GET", "/api/health").status == 200


def test_admin_stats_recover_when_the_database_returns(
    api: Callable[..., Reply], database_down: Callable[[], None]
) -> None:
    assert api("GET", "/api/admin/ownership/stats", ADMIN).status == 503
    database_down()
    recovered = api("GET", "/api/admin/ownership/stats", ADMIN)
    assert recovered.status == 200
    assert recovered.body["summaryConsistency"]["ok"] is True
