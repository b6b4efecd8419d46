"""JSON Farcaster Signatures, the app-key lookup's parsing, Farcaster's notification rules, and POSTs
through the shared retrying base: the pure parts of notifications, without services."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from local.neynar_stub import app_key, app_private_key, signed_key_request_metadata
from such_market.notifications.client import NotificationClient
from such_market.notifications.rules import Message, acceptable_client_url, same_site, shorten
from such_market.notifications.signatures import (
    InvalidSignatureError,
    MalformedSignatureError,
    parse_envelope,
    public_key_hex,
    sign,
    verify,
)
from such_market.upstream.errors import UpstreamProtocolError, UpstreamUnavailable
from such_market.upstream.neynar import NeynarClient, request_fid


def body(envelope: dict[str, str]) -> bytes:
    return json.dumps(envelope).encode()


def test_a_signed_envelope_verifies_and_carries_its_fid_key_and_payload() -> None:
    signed = sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_removed"})
    envelope = parse_envelope(body(signed))
    verify(envelope)
    assert (envelope.fid, envelope.key) == (7, app_key(7))
    assert json.loads(envelope.payload_bytes()) == {"event": "miniapp_removed"}
    assert public_key_hex(app_private_key(7)) == app_key(7)


def test_the_signature_covers_the_parts_exactly_as_sent() -> None:
    # Re-encoding a part (here: padding it) changes the signed text, so it no longer verifies
    signed = sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_removed"})
    padded = {**signed, "payload": signed["payload"] + "=" * (-len(signed["payload"]) % 4 or 4)}
    with pytest.raises((InvalidSignatureError, MalformedSignatureError)):
        verify(parse_envelope(body(padded)))


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_any_tampered_part_fails_verification(part: str) -> None:
    signed = sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_removed"})
    other = sign(fid=8, private_key=app_private_key(8), payload={"event": "notifications_disabled"})
    with pytest.raises(InvalidSignatureError):
        verify(parse_envelope(body({**signed, part: other[part]})))


def test_the_digest_identifies_the_exact_envelope() -> None:
    first = parse_envelope(body(sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_removed"})))
    again = parse_envelope(body(sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_removed"})))
    other = parse_envelope(body(sign(fid=7, private_key=app_private_key(7), payload={"event": "miniapp_added"})))
    assert first.digest == again.digest  # Ed25519 is deterministic: a replay is the same envelope
    assert first.digest != other.digest


def _header(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "header",
    [
        {"fid": 1, "type": "custody", "key": "0x" + "ab" * 32},
        {"fid": True, "type": "app_key", "key": "0x" + "ab" * 32},
        {"fid": 0, "type": "app_key", "key": "0x" + "ab" * 32},
        {"fid": 1, "type": "app_key", "key": "ab" * 32},
        {"fid": 1, "type": "app_key", "key": "0x" + "ab" * 31},
        ["not", "an", "object"],
    ],
)
def test_headers_that_name_no_app_key_cannot_be_verified(header: object) -> None:
    signed = sign(fid=1, private_key=app_private_key(1), payload={"event": "miniapp_removed"})
    with pytest.raises(InvalidSignatureError):
        parse_envelope(body({**signed, "header": _header(header)}))


def test_signer_metadata_decodes_to_the_request_fid() -> None:
    assert request_fid(signed_key_request_metadata(9152)) == 9152
    with pytest.raises(ValueError, match="base64"):
        request_fid("not base64!")
    with pytest.raises(ValueError, match="short"):
        request_fid(base64.b64encode(b"\x00" * 64).decode())


def test_the_app_key_lookup_asks_the_hub_with_the_key_and_reads_the_signer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        signer = {
            "signerEventBody": {
                "key": app_key(5).upper().replace("0X", "0x"),
                "metadata": signed_key_request_metadata(42),
            }
        }
        return httpx.Response(200, json={"events": [signer]})

    client = NeynarClient(api_key="k", hub_url="https://hub.example", transport=httpx.MockTransport(handler))
    assert client.app_key_fid(fid=5, key=app_key(5)) == 42
    assert client.app_key_fid(fid=5, key=app_key(6)) is None
    assert str(seen[0].url) == "https://hub.example/v1/onChainSignersByFid?fid=5"
    assert seen[0].headers["x-api-key"] == "k"


def test_an_unreadable_hub_answer_is_a_protocol_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"events": "nope"}))
    client = NeynarClient(api_key="k", transport=transport)
    with pytest.raises(UpstreamProtocolError):
        client.app_key_fid(fid=5, key=app_key(5))


@pytest.mark.parametrize(
    ("url", "strict", "local"),
    [
        ("https://api.farcaster.xyz/v1/frame-notifications", True, True),
        ("http://api.farcaster.xyz/v1/frame-notifications", False, True),
        ("https://10.0.0.1/notify", False, True),
        ("https://[::1]/notify", False, True),
        ("https://localhost/notify", False, True),
        ("https://metadata.internal/notify", False, True),
        ("https://user:pass@api.farcaster.xyz/x", False, True),
        ("https://intranet/notify", False, True),
        ("ftp://api.farcaster.xyz/x", False, False),
        ("https://api.farcaster.xyz/a b", False, False),
        ("https://api.farcaster.xyz/" + "x" * 1024, False, False),
    ],
)
def test_client_urls_must_be_public_https(url: str, strict: bool, local: bool) -> None:
    assert acceptable_client_url(url, allow_local_stub=False) is strict
    assert acceptable_client_url(url, allow_local_stub=True) is local


def test_messages_obey_farcasters_limits() -> None:
    base = "https://such.market"
    assert Message("t" * 32, "b" * 128, "https://such.market/x").check(base)
    for message in (
        Message("t" * 33, "b", "https://such.market/"),
        Message("t", "b" * 129, "https://such.market/"),
        Message("t", "b", "https://such.market.evil.example/"),
        Message("t", "b", "http://such.market/"),
        Message("", "b", "https://such.market/"),
    ):
        with pytest.raises(ValueError, match=r"title|body|targetUrl"):
            message.check(base)
    assert same_site("https://SUCH.market/a", base)
    assert shorten("a  very\nlong text", 10) == "a very lo…"


def test_posts_go_through_the_shared_retrying_base() -> None:
    answers = iter(
        [
            httpx.Response(503, text="busy"),
            httpx.Response(200, json={"result": {"successfulTokens": ["a"], "invalidTokens": ["b"]}}),
        ]
    )
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return next(answers)

    client = NotificationClient(transport=httpx.MockTransport(handler), sleep=lambda _: None, request_attempts=2)
    message = Message("Hi", "There", "https://such.market/")
    result = client.send(url="https://api.farcaster.xyz/n", notification_id="n-1", message=message, tokens=["a", "b"])
    assert (result.successful, result.invalid, result.rate_limited) == ({"a"}, {"b"}, frozenset())
    assert (
        bodies[0]
        == bodies[1]
        == {
            "notificationId": "n-1",
            "title": "Hi",
            "body": "There",
            "targetUrl": "https://such.market/",
            "tokens": ["a", "b"],
        }
    )
    failing = NotificationClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(502)), sleep=lambda _: None, request_attempts=2
    )
    with pytest.raises(UpstreamUnavailable):
        failing.send(url="https://api.farcaster.xyz/n", notification_id="n-1", message=message, tokens=["a"])
