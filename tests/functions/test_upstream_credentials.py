"""An upstream that refuses our key is a configuration fault: 502 with its own code, one request (never
retried), an error log naming the upstream and the status, and no key anywhere in the answer or the log.

The stubs check the key they receive exactly as the real services do, so these run the whole path:
handler → use case → client → stub → the one error map at the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from local.alchemy_stub import ERC721_CONTRACT, AlchemyStub
from local.neynar_stub import NeynarStub
from such_market.container import close_all
from tests.functions.conftest import Reply

WRONG_KEY = "a-key-the-upstream-does-not-know"


def _wrong_key(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, WRONG_KEY)
    close_all()


@pytest.mark.parametrize("target", ["/api/profile/1", "/api/verifications/2", "/api/nft-contracts/3"])
def test_neynar_refusing_our_key_is_a_502_without_retries(
    api: Callable[..., Reply],
    neynar_stub: NeynarStub,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    target: str,
) -> None:
    _wrong_key(monkeypatch, "NEYNAR_API_KEY")
    with caplog.at_level(logging.ERROR):
        reply = api("GET", target)
    assert reply.status == 502
    assert reply.body == {
        "error": "the Farcaster data provider refused our credentials",
        "code": "upstream_credentials_rejected",
    }
    assert neynar_stub.request_count() == 1
    refused = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [(record.__dict__["upstream"], record.__dict__["status"]) for record in refused] == [("neynar", 401)]
    assert WRONG_KEY not in caplog.text
    assert WRONG_KEY not in str(reply.body)


def test_alchemy_refusing_our_key_is_a_502_without_retries(
    api: Callable[..., Reply], alchemy_stub: AlchemyStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wrong_key(monkeypatch, "ALCHEMY_API_KEY")
    reply = api("GET", f"/api/collection/{ERC721_CONTRACT}")
    assert (reply.status, reply.body["code"]) == (502, "upstream_credentials_rejected")
    assert reply.body["error"] == "the NFT data provider refused our credentials"
    assert alchemy_stub.request_count() == 1


def test_a_wallet_scan_refused_upstream_fails_the_answer_instead_of_marking_wallets(
    api: Callable[..., Reply], alchemy_stub: AlchemyStub, neynar_stub: NeynarStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neynar accepts us, Alchemy does not: the user's wallets cannot be scanned at all
    _wrong_key(monkeypatch, "ALCHEMY_API_KEY")
    reply = api("GET", "/api/nft-contracts/1")
    assert (reply.status, reply.body["code"]) == (502, "upstream_credentials_rejected")
    assert alchemy_stub.request_count("getContractsForOwner") == 1
