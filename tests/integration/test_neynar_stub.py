"""The Neynar stub's key check over HTTP: only its own ``x-api-key`` is served, as Neynar serves only the
account's key, so a key sent to the wrong upstream fails in tests and under ``make dev`` as it would in AWS."""

from __future__ import annotations

import httpx
import pytest

from local.alchemy_stub import AlchemyStub
from local.neynar_stub import BULK_ENDPOINT, DEFAULT_API_KEY, NeynarStub, stub_user
from such_market.upstream.errors import UpstreamBadRequest
from such_market.upstream.neynar import NeynarClient

WRONG_KEY = "wrong-key-9876543210"


def _bulk(stub: NeynarStub, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{stub.base_url}/v2/farcaster/user/bulk?fids=1", headers=headers)


def test_its_own_key_is_served(neynar_stub: NeynarStub) -> None:
    response = _bulk(neynar_stub, {"x-api-key": neynar_stub.api_key})
    assert response.status_code == 200
    assert response.json() == {"users": [stub_user(1)]}


@pytest.mark.parametrize("key", [WRONG_KEY, DEFAULT_API_KEY.upper(), DEFAULT_API_KEY + "0", DEFAULT_API_KEY[:-1]])
def test_any_other_key_is_401_with_neynars_shape(neynar_stub: NeynarStub, key: str) -> None:
    response = _bulk(neynar_stub, {"x-api-key": key})
    assert response.status_code == 401
    assert response.json() == {"message": f"Invalid API key {key}", "code": "Unauthorized"}
    assert neynar_stub.request_count(BULK_ENDPOINT, fid=1) == 1


def test_a_missing_key_is_401(neynar_stub: NeynarStub) -> None:
    response = _bulk(neynar_stub, {})
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"


def test_the_stub_serves_the_key_it_is_given_and_has_a_default() -> None:
    with NeynarStub() as default, NeynarStub(api_key="another-key") as configured:
        assert (default.api_key, configured.api_key) == ("local-neynar-key", "another-key")
        assert _bulk(configured, {"x-api-key": "another-key"}).status_code == 200
        assert _bulk(configured, {"x-api-key": default.api_key}).status_code == 401


def test_the_alchemy_stubs_key_is_refused(neynar_stub: NeynarStub, alchemy_stub: AlchemyStub) -> None:
    # Given both stubs as the tests and `make dev` run them, each with its own default key
    assert neynar_stub.api_key != alchemy_stub.api_key
    # When the Alchemy key is sent to Neynar, Then it is refused; Neynar's own key is served
    assert _bulk(neynar_stub, {"x-api-key": alchemy_stub.api_key}).status_code == 401
    assert _bulk(neynar_stub, {"x-api-key": neynar_stub.api_key}).status_code == 200


def test_the_client_with_the_alchemy_key_fails_fast_without_leaking(
    neynar_stub: NeynarStub, alchemy_stub: AlchemyStub
) -> None:
    sleeps: list[float] = []
    with (
        NeynarClient(api_key=alchemy_stub.api_key, base_url=neynar_stub.base_url, sleep=sleeps.append) as neynar,
        pytest.raises(UpstreamBadRequest) as caught,
    ):
        neynar.get_user(fid=1)
    assert caught.value.status == 401
    assert alchemy_stub.api_key not in str(caught.value)
    assert neynar_stub.request_count() == 1
    assert sleeps == []
