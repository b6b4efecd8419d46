"""The Neynar client over ``httpx.MockTransport``: batching, tolerant parsing, retries, key hygiene, settings.

Time never passes for real: the client gets a fake monotonic clock whose ``sleep`` records each wait
and advances it, and a fixed jitter.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from such_market.config import load_settings
from such_market.container import close_all
from such_market.errors import ConfigurationError
from such_market.upstream.errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from such_market.upstream.neynar import (
    MAX_FIDS_PER_CALL,
    NeynarClient,
    NeynarUser,
    get_neynar_client,
)
from such_market.upstream.neynar_settings import NeynarSettings

API_KEY = "ny-K3y-8fQ2xWz"
WALLET = "0x00000000000000000000000000000000000000aa"
OTHER = "0x00000000000000000000000000000000000000bb"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Recorder:
    """A MockTransport handler answering from a list (the last answer repeats) and recording requests."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def fids(self, index: int) -> list[int]:
        return [int(fid) for fid in self.requests[index].url.params["fids"].split(",")]


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"})


def error(status: int, body: object | str, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return httpx.Response(status, content=content, headers=headers)


def echo_users(request: httpx.Request) -> httpx.Response:
    """Neynar as it behaves: every asked fid below 1000 exists, others are absent."""
    fids = [int(fid) for fid in request.url.params["fids"].split(",")]
    return ok({"users": [user_payload(fid) for fid in fids if fid < 1000]})


def user_payload(fid: object = 1, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object": "user",
        "fid": fid,
        "username": "alice",
        "display_name": "Alice",
        "pfp_url": "https://pfp/alice.png",
        "custody_address": OTHER.upper().replace("0X", "0x"),
        "follower_count": 10,
        "following_count": 3,
        "verified_addresses": {"eth_addresses": [WALLET], "sol_addresses": []},
        "power_badge": False,
    }
    payload.update(fields)
    return payload


def make_client(handler: Handler, time_: FakeTime | None = None, **options: Any) -> NeynarClient:
    fake = time_ or FakeTime()
    options.setdefault("jitter", lambda: 0.0)
    return NeynarClient(
        api_key=API_KEY, transport=httpx.MockTransport(handler), sleep=fake.sleep, clock=fake.clock, **options
    )


# -- requests ------------------------------------------------------------------------------------------


def test_bulk_users_request_carries_the_key_header_and_the_fids() -> None:
    recorder = Recorder(echo_users)
    users = make_client(recorder).get_users(fids=[3, 1, 3])
    request = recorder.requests[0]
    assert str(request.url).startswith("https://api.neynar.com/v2/farcaster/user/bulk/?")
    assert request.headers["x-api-key"] == API_KEY
    assert recorder.fids(0) == [3, 1]  # de-duplicated, in order
    assert sorted(users) == [1, 3]


def test_more_than_100_fids_are_batched() -> None:
    # Given 250 fids
    recorder = Recorder(echo_users)
    # When they are asked for at once
    users = make_client(recorder).get_users(fids=range(1, 251))
    # Then three requests of at most 100 fids cover them all
    assert [len(recorder.fids(index)) for index in range(len(recorder.requests))] == [100, 100, 50]
    assert all(len(recorder.fids(index)) <= MAX_FIDS_PER_CALL for index in range(3))
    assert sorted(users) == list(range(1, 251))


def test_unknown_fids_are_absent_and_get_user_says_none() -> None:
    client = make_client(Recorder(echo_users))
    assert client.get_users(fids=[5, 5000]).keys() == {5}
    assert client.get_user(fid=5000) is None


def test_users_not_asked_for_are_ignored() -> None:
    client = make_client(Recorder(ok({"users": [user_payload(1), user_payload(2)]})))
    assert client.get_users(fids=[1]).keys() == {1}


@pytest.mark.parametrize("fid", [0, -1, True, "1", 2**63])
def test_invalid_fids_never_reach_the_upstream(fid: Any) -> None:
    recorder = Recorder(echo_users)
    with pytest.raises(ValueError, match="not a fid"):
        make_client(recorder).get_users(fids=[fid])
    assert recorder.requests == []


def test_base_url_is_configurable_and_timeouts_explicit() -> None:
    recorder = Recorder(echo_users)
    make_client(recorder, base_url="http://127.0.0.1:9999/").get_user(fid=1)
    assert str(recorder.requests[0].url).startswith("http://127.0.0.1:9999/v2/farcaster/user/bulk/?")
    client = NeynarClient(api_key=API_KEY)
    assert (client._http.timeout.connect, client._http.timeout.read) == (2.0, 5.0)
    client.close()


# -- parsing -------------------------------------------------------------------------------------------


def test_user_is_parsed_and_normalized() -> None:
    payload = user_payload(
        "7",
        follower_count="12",
        verified_addresses={"eth_addresses": [WALLET.upper().replace("0X", "0x"), "not-an-address", WALLET, 42]},
    )
    user = make_client(Recorder(ok({"users": [payload]}))).get_user(fid=7)
    assert user == NeynarUser(
        fid=7,
        username="alice",
        display_name="Alice",
        pfp_url="https://pfp/alice.png",
        custody_address=OTHER,
        verified_eth_addresses=(WALLET,),
        follower_count=12,
        following_count=3,
    )


def test_older_shapes_and_odd_values_are_tolerated() -> None:
    payload = {
        "fid": 9.0,
        "username": "  ",
        "displayName": "Bob",
        "pfp": {"url": "https://pfp/bob.png"},
        "custodyAddress": "0x123",
        "verifications": [OTHER],
        "followerCount": -5,
        "following_count": 2**40,
        "somethingNew": {"x": [1]},
    }
    user = NeynarUser.from_neynar(payload)
    assert (user.fid, user.username, user.display_name, user.pfp_url) == (9, None, "Bob", "https://pfp/bob.png")
    assert (user.custody_address, user.verified_eth_addresses) == (None, (OTHER,))
    assert (user.follower_count, user.following_count) == (None, None)


def test_malformed_users_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    body = {"users": [user_payload(1), {"fid": "x"}, "junk", None, user_payload(2)]}
    with caplog.at_level(logging.WARNING):
        users = make_client(Recorder(ok(body))).get_users(fids=[1, 2])
    assert sorted(users) == [1, 2]
    assert "skipped malformed upstream items" in caplog.text


@pytest.mark.parametrize("body", [{"users": {"1": {}}}, [1, 2], "text"])
def test_a_body_of_the_wrong_shape_is_a_protocol_error(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        make_client(Recorder(ok(body))).get_user(fid=1)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
USER_FIELDS = st.sampled_from(
    [
        "fid",
        "username",
        "display_name",
        "displayName",
        "pfp_url",
        "pfp",
        "custody_address",
        "verified_addresses",
        "verifications",
        "follower_count",
        "following_count",
    ]
)


@given(fields=st.dictionaries(USER_FIELDS, JSON, max_size=11), fid=st.integers(min_value=1, max_value=2**63 - 1))
def test_property_any_user_payload_parses_to_valid_values_or_raises_value_error(
    fields: dict[str, Any], fid: int
) -> None:
    for payload in (fields, {**fields, "fid": fid}):
        try:
            user = NeynarUser.from_neynar(payload)
        except ValueError:
            assert payload is fields  # with a valid fid, any other fields parse
            continue
        assert user.fid > 0
        for address in (*user.verified_eth_addresses, *([user.custody_address] if user.custody_address else [])):
            assert address == address.lower()
            assert len(address) == 42
            assert address.startswith("0x")
        assert len(set(user.verified_eth_addresses)) == len(user.verified_eth_addresses)
        for count in (user.follower_count, user.following_count):
            assert count is None or 0 <= count < 2**31


@given(addresses=st.lists(st.from_regex(r"0[xX][0-9a-fA-F]{40}", fullmatch=True) | st.text(max_size=44)))
def test_property_verified_addresses_are_lower_case_valid_and_unique(addresses: list[str]) -> None:
    user = NeynarUser.from_neynar({"fid": 1, "verified_addresses": {"eth_addresses": addresses}})
    valid = [text.strip().lower() for text in addresses if len(text.strip()) == 42 and text.strip()[:2] == "0x"]
    assert list(user.verified_eth_addresses) == [
        address for address in dict.fromkeys(valid) if all(c in "0123456789abcdef" for c in address[2:])
    ]


# -- retries and errors --------------------------------------------------------------------------------


def test_429_honours_retry_after_then_succeeds() -> None:
    time_ = FakeTime()
    recorder = Recorder(error(429, {"message": "Rate limit exceeded"}, {"Retry-After": "2"}), echo_users)
    user = make_client(recorder, time_, jitter=lambda: 0.5).get_user(fid=1)
    assert user is not None
    assert time_.sleeps == [2.0 + 0.5 * 0.25]  # Retry-After plus full-jitter backoff
    assert len(recorder.requests) == 2


def test_429_is_bounded_by_attempts_and_carries_retry_after() -> None:
    time_ = FakeTime()
    recorder = Recorder(error(429, {"message": "slow down"}, {"Retry-After": "1"}))
    with pytest.raises(UpstreamRateLimited) as caught:
        make_client(recorder, time_, max_attempts=3).get_user(fid=1)
    assert caught.value.retry_after == 1.0
    assert caught.value.upstream == "Neynar"
    assert len(recorder.requests) == 3
    assert time_.sleeps == [1.0, 1.0]


def test_a_retry_after_beyond_the_budget_fails_at_once() -> None:
    recorder = Recorder(error(429, "busy", {"Retry-After": "600"}))
    with pytest.raises(UpstreamRateLimited):
        make_client(recorder, retry_budget_seconds=10).get_user(fid=1)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("answer", [error(503, "down"), httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_5xx_and_transport_errors_retry_then_fail_as_unavailable(answer: Any) -> None:
    recorder = Recorder(answer)
    with pytest.raises(UpstreamUnavailable) as caught:
        make_client(recorder, max_attempts=2).get_user(fid=1)
    assert len(recorder.requests) == 2
    assert not isinstance(caught.value, UpstreamRateLimited)


def test_other_4xx_fail_fast_with_neynars_message() -> None:
    recorder = Recorder(error(400, {"message": "fids must be integers", "code": "InvalidField"}))
    with pytest.raises(UpstreamBadRequest) as caught:
        make_client(recorder).get_user(fid=1)
    assert len(recorder.requests) == 1
    assert caught.value.detail == "fids must be integers"
    assert str(caught.value).startswith("Neynar user/bulk failed (HTTP 400)")


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: error(401, {"message": f"Invalid API key {request.headers['x-api-key']}"}),
        lambda request: error(500, f"failed for {request.headers['x-api-key']}"),
        lambda request: error(429, f"{API_KEY} is over its limit", {"Retry-After": "0"}),
        httpx.ConnectError("connection refused"),
    ],
)
def test_the_key_never_appears_in_errors_requests_or_logs(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(answer)
    client = make_client(recorder)
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError) as caught:
        client.get_user(fid=1)
    exception = caught.value
    for text in (
        str(exception),
        repr(exception),
        exception.detail,
        caplog.text,
        repr(client),
        str(client._http.headers),
    ):
        assert API_KEY not in text
    assert exception.__cause__ is None
    for record in caplog.records:
        assert API_KEY not in str(record.__dict__)


def test_the_key_reaches_only_the_wire_copy_of_a_request() -> None:
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return echo_users(request)

    client = make_client(capture)
    response_request: list[httpx.Request] = []
    client._http.event_hooks["response"] = [lambda response: response_request.append(response.request)]
    client.get_user(fid=1)
    assert seen[0].headers["x-api-key"] == API_KEY
    assert "x-api-key" not in response_request[0].headers  # what httpx and its hooks see


# -- settings and the container's client ------------------------------------------------------------------------


@pytest.fixture
def neynar_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("NEYNAR_API_KEY", "NEYNAR_API_KEY_SECRET_ARN", "NEYNAR_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    close_all()
    yield monkeypatch
    close_all()


def test_settings_need_a_key(neynar_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="NEYNAR_API_KEY"):
        load_settings(NeynarSettings)


@pytest.mark.parametrize(("name", "value"), [("NEYNAR_BASE_URL", "ftp://x"), ("NEYNAR_MAX_ATTEMPTS", "0")])
def test_malformed_settings_name_the_variable(neynar_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    neynar_env.setenv("NEYNAR_API_KEY", API_KEY)
    neynar_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings(NeynarSettings)


def test_settings_keep_the_key_secret_and_the_client_is_made_once(neynar_env: pytest.MonkeyPatch) -> None:
    neynar_env.setenv("NEYNAR_API_KEY", API_KEY)
    settings = load_settings(NeynarSettings)
    assert settings.neynar_base_url == "https://api.neynar.com"
    assert API_KEY not in repr(settings)
    assert API_KEY not in str(dataclasses.asdict(settings))
    client = get_neynar_client(settings)
    assert client is get_neynar_client(settings)
    assert API_KEY not in repr(client)


def test_the_key_can_come_from_secrets_manager(neynar_env: pytest.MonkeyPatch) -> None:
    neynar_env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="neynar-key", SecretString=API_KEY
        )["ARN"]
        neynar_env.setenv("NEYNAR_API_KEY_SECRET_ARN", arn)
        recorder = Recorder(echo_users)
        client = NeynarClient.from_settings(load_settings(NeynarSettings), transport=httpx.MockTransport(recorder))
        client.get_user(fid=1)
    assert recorder.requests[0].headers["x-api-key"] == API_KEY
    client.close()


def test_users_settings_need_both_upstream_keys(neynar_env: pytest.MonkeyPatch) -> None:
    # Both parts validate their key: neither validator may shadow the other
    from such_market.users.service import UsersSettings

    neynar_env.setenv("DATABASE_URL", "postgresql://localhost/db")
    neynar_env.setenv("REDIS_URL", "redis://localhost")
    neynar_env.delenv("ALCHEMY_API_KEY_SECRET_ARN", raising=False)
    neynar_env.setenv("ALCHEMY_API_KEY", "alchemy-key")
    with pytest.raises(ConfigurationError, match="NEYNAR_API_KEY"):
        load_settings(UsersSettings)
    close_all()
    neynar_env.setenv("NEYNAR_API_KEY", API_KEY)
    neynar_env.delenv("ALCHEMY_API_KEY")
    with pytest.raises(ConfigurationError, match="ALCHEMY_API_KEY"):
        load_settings(UsersSettings)
