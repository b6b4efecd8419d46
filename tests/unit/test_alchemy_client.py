"""The Alchemy client over ``httpx.MockTransport``: parsing, paging, retries, errors and key hygiene.

Time never passes for real: the client gets a fake monotonic clock whose ``sleep`` records each wait
and advances it, a fixed wall clock (for HTTP-date ``Retry-After``) and a fixed jitter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import boto3
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import ValidationError

from such_market.config import load_settings
from such_market.container import close_all
from such_market.errors import ConfigurationError, SuchMarketError
from such_market.upstream.alchemy import (
    KEY_PLACEHOLDER,
    AlchemyClient,
    ContractMetadata,
    ContractOwner,
    Nft,
    OwnerContract,
    get_alchemy_client,
    normalize_token_id,
    parse_attributes,
)
from such_market.upstream.alchemy_settings import AlchemySettings
from such_market.upstream.errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
    parse_retry_after,
)

API_KEY = "k3y-Zq9XbR2wLm7Tt"
CONTRACT = "0x5a4d000000000000000000000000000000000721"
MIXED = "0x5A4D000000000000000000000000000000000721"
WALLET = "0x00000000000000000000000000000000000000aa"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps (or a test says so)."""

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

    def params(self, index: int = -1) -> dict[str, list[str]]:
        query = self.requests[index].url.params
        return {name: query.get_list(name) for name in query}


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"})


def error(status: int, body: object | str, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return httpx.Response(status, content=content, headers=headers)


def make_client(handler: Handler, time_: FakeTime | None = None, **options: Any) -> AlchemyClient:
    fake = time_ or FakeTime()
    options.setdefault("jitter", lambda: 0.0)
    return AlchemyClient(
        api_key=API_KEY,
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        clock=fake.clock,
        now=lambda: NOW,
        **options,
    )


def nft_payload(token_id: object = "1", **fields: Any) -> dict[str, Any]:  # noqa: S107 - a token id
    payload: dict[str, Any] = {
        "contract": {"address": MIXED, "tokenType": "ERC721", "name": "Such Punks"},
        "tokenId": token_id,
        "tokenType": "ERC721",
        "name": f"Such Punk #{token_id}",
        "description": "a punk",
        "image": {
            "cachedUrl": "https://cdn/1.png",
            "thumbnailUrl": "https://cdn/1-256.png",
            "originalUrl": "ipfs://x/1.png",
        },
        "raw": {
            "tokenUri": "ipfs://x/1.json",
            "metadata": {"name": "Such Punk", "attributes": [{"trait_type": "Hat", "value": "Cap"}]},
            "error": None,
        },
        "timeLastUpdated": "2024-05-01T00:00:00Z",
    }
    payload.update(fields)
    return payload


# -- URL, key placement --------------------------------------------------------------------------------


def test_requests_go_to_the_network_host_with_the_key_in_the_path() -> None:
    recorder = Recorder(ok({"address": CONTRACT, "tokenType": "ERC721"}))
    make_client(recorder).get_contract_metadata(contract=MIXED)
    url = recorder.requests[0].url
    assert url.host == "base-mainnet.g.alchemy.com"
    assert url.path == f"/nft/v3/{API_KEY}/getContractMetadata"
    assert recorder.params() == {"contractAddress": [CONTRACT]}


def test_base_url_and_network_are_configurable() -> None:
    recorder = Recorder(ok({"address": CONTRACT, "tokenType": "ERC721"}))
    make_client(recorder, base_url="http://127.0.0.1:9999/prefix/").get_contract_metadata(contract=CONTRACT)
    assert str(recorder.requests[0].url).startswith(
        f"http://127.0.0.1:9999/prefix/nft/v3/{API_KEY}/getContractMetadata?"
    )
    recorder = Recorder(ok({"address": CONTRACT, "tokenType": "ERC721"}))
    make_client(recorder, network="eth-mainnet").get_contract_metadata(contract=CONTRACT)
    assert recorder.requests[0].url.host == "eth-mainnet.g.alchemy.com"


def test_timeouts_are_explicit() -> None:
    client = AlchemyClient(api_key=API_KEY)
    timeout = client._http.timeout
    assert (timeout.connect, timeout.read) == (2.0, 10.0)
    client.close()


def test_invalid_input_never_reaches_the_upstream() -> None:
    recorder = Recorder(ok({}))
    client = make_client(recorder)
    with pytest.raises(ValueError, match="40 hexadecimal"):
        client.get_contract_metadata(contract="0x123")
    with pytest.raises(ValueError, match="non-negative"):
        client.get_nft_metadata(contract=CONTRACT, token_id="-1")
    with pytest.raises(ValueError, match="page size"):
        client.get_nfts_for_contract_page(contract=CONTRACT, limit=101)
    with pytest.raises(ValueError, match="45"):
        client.get_nfts_for_owner_page(owner=WALLET, contract_addresses=[CONTRACT] * 46)
    assert recorder.requests == []


# -- contract metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["openSeaMetadata", "openseaMetadata"])
def test_contract_metadata_is_normalized(spelling: str) -> None:
    body = {
        "address": MIXED,
        "name": "Such Punks",
        "symbol": "SUCH",
        "totalSupply": "10000",
        "tokenType": "erc721",
        "contractDeployer": "0xABCDEF0000000000000000000000000000000001",
        "deployedBlockNumber": "12345",
        spelling: {"floorPrice": "0.42", "collectionName": "Such", "imageUrl": "https://i/1.png", "extra": [1]},
        "somethingNew": {"x": 1},
    }
    metadata = make_client(Recorder(ok(body))).get_contract_metadata(contract=CONTRACT)
    assert metadata is not None
    assert metadata.address == CONTRACT
    assert metadata.token_type == "ERC721"
    assert metadata.total_supply == "10000"
    assert metadata.contract_deployer == "0xabcdef0000000000000000000000000000000001"
    assert metadata.deployed_block_number == 12345
    assert metadata.opensea is not None
    assert metadata.opensea.floor_price == 0.42
    assert metadata.opensea.image_url == "https://i/1.png"


@pytest.mark.parametrize("token_type", ["NOT_A_CONTRACT", "NO_SUPPORTED_NFT_STANDARD"])
def test_no_collection_at_the_address_is_none(token_type: str) -> None:
    body = {"address": CONTRACT, "tokenType": token_type, "name": None, "openSeaMetadata": {"floorPrice": None}}
    assert make_client(Recorder(ok(body))).get_contract_metadata(contract=CONTRACT) is None


@pytest.mark.parametrize("status", [400, 404])
def test_contract_metadata_400_or_404_is_none(status: int) -> None:
    answer = error(status, {"error": {"message": "Contract does not exist"}})
    assert make_client(Recorder(answer)).get_contract_metadata(contract=CONTRACT) is None


def test_contract_metadata_other_4xx_raise() -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        make_client(Recorder(error(403, "forbidden"))).get_contract_metadata(contract=CONTRACT)
    assert caught.value.status == 403


# -- NFT parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("31", "31"), ("0x1f", "31"), ("0X1F", "31"), ("0x" + "0" * 62 + "1f", "31"), (31, "31"), (" 007 ", "7")],
)
def test_token_ids_decimal_or_hex(raw: object, expected: str) -> None:
    assert normalize_token_id(raw) == expected
    assert Nft.from_alchemy(nft_payload(raw)).token_id == expected


@pytest.mark.parametrize("raw", [-1, "-1", "0x", "1.5", "abc", True, None, 2**256, hex(2**256), 1.5, [1]])
def test_invalid_token_ids_are_rejected(raw: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        normalize_token_id(raw)


def test_nft_fields() -> None:
    nft = Nft.from_alchemy(nft_payload("0x1f"))
    assert nft.contract_address == CONTRACT
    assert nft.token_id == "31"
    assert nft.title == "Such Punk #0x1f"
    assert nft.image_url == "https://cdn/1.png"
    assert nft.thumbnail_url == "https://cdn/1-256.png"
    assert nft.original_image_url == "ipfs://x/1.png"
    assert nft.token_uri == "ipfs://x/1.json"
    assert [(a.trait_type, a.value) for a in nft.attributes] == [("Hat", "Cap")]
    assert nft.metadata_error is None


def test_title_falls_back_to_title_then_metadata_name() -> None:
    assert Nft.from_alchemy(nft_payload(name=None, title="Old Title")).title == "Old Title"
    assert Nft.from_alchemy(nft_payload(name="")).title == "Such Punk"


def test_image_falls_back_to_original_then_metadata_image() -> None:
    payload = nft_payload(image={"cachedUrl": None, "thumbnailUrl": None, "originalUrl": "ipfs://o.png"})
    assert Nft.from_alchemy(payload).image_url == "ipfs://o.png"
    payload = nft_payload(image=None, raw={"metadata": {"image": "https://m/i.png"}})
    nft = Nft.from_alchemy(payload)
    assert (nft.image_url, nft.thumbnail_url) == ("https://m/i.png", None)


def test_raw_error_is_kept_as_metadata_error() -> None:
    payload = nft_payload(raw={"tokenUri": None, "metadata": {}, "error": "Failed to get token uri"}, name=None)
    nft = Nft.from_alchemy(payload)
    assert nft.metadata_error == "Failed to get token uri"
    assert nft.attributes == ()
    assert nft.metadata == {}


def test_contract_address_from_the_call_when_the_item_has_none() -> None:
    nft = Nft.from_alchemy({"tokenId": "5"}, contract_address=MIXED)
    assert (nft.contract_address, nft.token_id, nft.title) == (CONTRACT, "5", None)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"attributes": [{"trait_type": "Level", "value": 5}]}, [("Level", "5")]),
        ({"attributes": [{"trait_type": "Score", "value": 1.5}]}, [("Score", "1.5")]),
        ({"attributes": [{"trait_type": "Score", "value": 2.0}]}, [("Score", "2")]),
        ({"attributes": [{"trait_type": "Shiny", "value": True}]}, [("Shiny", "true")]),
        ({"attributes": [{"traitType": "Eyes", "value": "Laser"}]}, [("Eyes", "Laser")]),
        ({"attributes": {"Background": "Blue", "Level": 3}}, [("Background", "Blue"), ("Level", "3")]),
        ({"attributes": "not a list"}, []),
        ({"attributes": None}, []),
        ({}, []),
        ("not an object", []),
        ({"attributes": [{"value": "untyped"}, {"trait_type": "", "value": "x"}, "junk", 3]}, []),
        ({"attributes": [{"trait_type": "Hat", "value": None}, {"trait_type": "Hat", "value": {"x": 1}}]}, []),
        ({"traits": [{"trait_type": "Body", "value": "Robot"}]}, [("Body", "Robot")]),
    ],
)
def test_attributes_are_read_tolerantly(metadata: object, expected: list[tuple[str, str]]) -> None:
    assert [(a.trait_type, a.value) for a in parse_attributes(metadata)] == expected


def test_get_nft_metadata_returns_none_for_a_token_that_does_not_exist() -> None:
    body = nft_payload("99999", name=None, raw={"metadata": {}, "error": "Token does not exist"})
    recorder = Recorder(ok(body))
    assert make_client(recorder).get_nft_metadata(contract=CONTRACT, token_id="0x1869f") is None
    assert recorder.params()["tokenId"] == ["99999"]


def test_get_nft_metadata_keeps_other_errors() -> None:
    body = nft_payload("7", raw={"metadata": {}, "error": "IPFS gateway timed out"})
    nft = make_client(Recorder(ok(body))).get_nft_metadata(contract=CONTRACT, token_id=7)
    assert nft is not None
    assert nft.metadata_error == "IPFS gateway timed out"


def test_get_nft_metadata_not_found_is_none() -> None:
    assert make_client(Recorder(error(404, "no"))).get_nft_metadata(contract=CONTRACT, token_id=1) is None


def test_malformed_items_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    body = {"nfts": [nft_payload("1"), {"tokenId": "nope"}, "junk", nft_payload("2")], "pageKey": None}
    with caplog.at_level(logging.WARNING):
        page = make_client(Recorder(ok(body))).get_nfts_for_contract_page(contract=CONTRACT)
    assert [nft.token_id for nft in page.nfts] == ["1", "2"]
    assert "skipped malformed upstream items" in caplog.text


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_a_2xx_that_is_not_a_json_object_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        make_client(Recorder(httpx.Response(200, content=body))).get_nfts_for_contract_page(contract=CONTRACT)


def test_a_list_that_is_not_an_array_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        make_client(Recorder(ok({"nfts": {"a": 1}}))).get_nfts_for_contract_page(contract=CONTRACT)


# -- pagination --------------------------------------------------------------------------------------


def paged(pages: dict[str | None, tuple[list[str], str | None]], param: str = "startToken") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        ids, key = pages[request.url.params.get(param)]
        return ok({"nfts": [nft_payload(token_id) for token_id in ids], "pageKey": key})

    return handler


def test_iter_nfts_for_contract_pages_to_the_end() -> None:
    recorder = Recorder(paged({None: (["0", "1"], "0x2"), "0x2": (["2", "3"], "0x4"), "0x4": (["4"], None)}))
    pages = list(make_client(recorder).iter_nfts_for_contract(contract=CONTRACT, limit=2))
    assert [nft.token_id for page in pages for nft in page.nfts] == ["0", "1", "2", "3", "4"]
    assert pages[-1].page_key is None
    assert [r.url.params.get("startToken") for r in recorder.requests] == [None, "0x2", "0x4"]
    assert recorder.params(0) == {"contractAddress": [CONTRACT], "withMetadata": ["true"], "limit": ["2"]}


def test_a_repeated_page_key_stops_the_listing(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(paged({None: (["0"], "A"), "A": (["1"], "B"), "B": (["2"], "A")}))
    with caplog.at_level(logging.WARNING):
        pages = list(make_client(recorder).iter_nfts_for_contract(contract=CONTRACT))
    assert len(recorder.requests) == 3
    assert pages[-1].page_key == "A"  # not None: the listing is known to be incomplete
    assert "repeated a page key" in caplog.text


def test_the_same_page_key_twice_in_a_row_stops_at_once() -> None:
    recorder = Recorder(paged({None: (["0"], "A"), "A": (["1"], "A")}))
    assert len(list(make_client(recorder).iter_nfts_for_contract(contract=CONTRACT))) == 2


def test_the_page_cap_bounds_an_endless_listing(caplog: pytest.LogCaptureFixture) -> None:
    counter = iter(range(10**6))

    def endless(request: httpx.Request) -> httpx.Response:
        return ok({"nfts": [nft_payload("1")], "pageKey": f"k{next(counter)}"})

    recorder = Recorder(endless)
    with caplog.at_level(logging.WARNING):
        pages = list(make_client(recorder, max_pages=5).iter_nfts_for_contract(contract=CONTRACT))
    assert len(pages) == len(recorder.requests) == 5
    assert pages[-1].page_key is not None
    assert "page cap" in caplog.text
    recorder = Recorder(endless)
    assert len(list(make_client(recorder).iter_nfts_for_contract(contract=CONTRACT, max_pages=2))) == 2


def test_pages_are_fetched_lazily() -> None:
    recorder = Recorder(paged({None: (["0"], "A"), "A": (["1"], None)}))
    iterator = make_client(recorder).iter_nfts_for_contract(contract=CONTRACT)
    assert recorder.requests == []
    next(iterator)
    assert len(recorder.requests) == 1


# -- owners -----------------------------------------------------------------------------------------------


def test_owners_of_an_erc721_token_hold_one() -> None:
    recorder = Recorder(ok({"owners": ["0xAA00000000000000000000000000000000000001"], "pageKey": None}))
    owners = make_client(recorder).get_owners_for_nft(contract=CONTRACT, token_id="0x10", token_type="ERC721")
    assert [(o.address, o.balance) for o in owners] == [("0xaa00000000000000000000000000000000000001", "1")]
    assert recorder.params() == {"contractAddress": [CONTRACT], "tokenId": ["16"]}


def test_owners_of_an_erc1155_token_get_their_balances_from_get_nfts_for_owner() -> None:
    holder_a = "0xaa00000000000000000000000000000000000001"
    holder_b = "0xbb00000000000000000000000000000000000002"
    holder_c = "0xcc00000000000000000000000000000000000003"

    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        if method == "getOwnersForNFT":
            return ok({"owners": [holder_a.upper().replace("0X", "0x"), holder_b, holder_c, holder_a]})
        if method == "getContractMetadata":
            return ok({"address": CONTRACT, "tokenType": "ERC1155"})
        owner = request.url.params["owner"]
        if owner == holder_a:  # the token is on the second page of this wallet
            if request.url.params.get("pageKey") is None:
                return ok(
                    {"ownedNfts": [{"contractAddress": CONTRACT, "tokenId": "1", "balance": "9"}], "pageKey": "p2"}
                )
            return ok({"ownedNfts": [{"contractAddress": CONTRACT, "tokenId": "0x5", "balance": 12}], "pageKey": None})
        return ok({"ownedNfts": [{"contractAddress": CONTRACT, "tokenId": "5", "balance": "3"}], "pageKey": None})

    recorder = Recorder(handler)
    owners = make_client(recorder).get_owners_for_nft(contract=CONTRACT, token_id=5, balance_lookup_limit=2)
    assert [(o.address, o.balance) for o in owners] == [(holder_a, "12"), (holder_b, "3"), (holder_c, None)]
    methods = [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests]
    assert methods == [
        "getOwnersForNFT",
        "getContractMetadata",
        "getNFTsForOwner",
        "getNFTsForOwner",
        "getNFTsForOwner",
    ]
    lookup = recorder.params(2)
    assert lookup["contractAddresses[]"] == [CONTRACT]
    assert lookup["withMetadata"] == ["false"]


def test_a_token_without_owners_costs_one_call() -> None:
    recorder = Recorder(ok({"owners": [], "pageKey": None}))
    assert make_client(recorder).get_owners_for_nft(contract=CONTRACT, token_id=1) == []
    assert len(recorder.requests) == 1


def test_owners_for_contract_with_token_balances() -> None:
    pages = {
        None: {
            "owners": [
                {
                    "ownerAddress": "0xAA00000000000000000000000000000000000001",
                    "tokenBalances": [{"tokenId": "0x1", "balance": 2}, {"tokenId": "7", "balance": "1"}, {"x": 1}],
                }
            ],
            "pageKey": "next",
        },
        "next": {"owners": [{"ownerAddress": WALLET, "tokenBalances": []}, {"ownerAddress": "bad"}], "pageKey": None},
    }
    recorder = Recorder(lambda request: ok(pages[request.url.params.get("pageKey")]))
    result = list(make_client(recorder).get_owners_for_contract(contract=CONTRACT))
    owners = [owner for page in result for owner in page.owners]
    assert owners[0].address == "0xaa00000000000000000000000000000000000001"
    assert [(b.token_id, b.balance) for b in owners[0].token_balances] == [("1", "2"), ("7", "1")]
    assert [o.address for o in owners] == ["0xaa00000000000000000000000000000000000001", WALLET]
    assert recorder.params(0)["withTokenBalances"] == ["true"]


def test_owners_for_contract_without_balances_are_strings() -> None:
    body = {"owners": ["0xAA00000000000000000000000000000000000001"], "pageKey": None}
    page = make_client(Recorder(ok(body))).get_owners_for_contract_page(contract=CONTRACT, with_token_balances=False)
    assert page.owners == (ContractOwner(address="0xaa00000000000000000000000000000000000001"),)


# -- wallets ----------------------------------------------------------------------------------------------


def test_nfts_for_owner_filters_and_balances() -> None:
    body = {"ownedNfts": [nft_payload("3", balance="4")], "totalCount": "1", "pageKey": None}
    recorder = Recorder(ok(body))
    pages = list(
        make_client(recorder).get_nfts_for_owner(
            owner=WALLET.upper().replace("0X", "0x"), contract_addresses=[MIXED, CONTRACT]
        )
    )
    assert pages[0].nfts[0].balance == "4"
    assert pages[0].total_count == 1
    assert recorder.params() == {
        "owner": [WALLET],
        "withMetadata": ["true"],
        "pageSize": ["100"],
        "contractAddresses[]": [CONTRACT, CONTRACT],
    }


@pytest.mark.parametrize("spelling", ["openSeaMetadata", "openseaMetadata", "opensea"])
def test_contracts_for_owner(spelling: str) -> None:
    pages = {
        None: {
            "contracts": [
                {
                    "address": MIXED,
                    "name": None,
                    "symbol": "SUCH",
                    "tokenType": "ERC1155",
                    "totalBalance": "1200",
                    "numDistinctTokensOwned": 3,
                    "isSpam": "false",
                    "image": {"cachedUrl": None, "originalUrl": "https://o.png"},
                    spelling: {"collectionName": "Such Items", "floorPrice": 0.1},
                },
                {"name": "no address"},
            ],
            "totalCount": 2,
            "pageKey": "p2",
        },
        "p2": {"contracts": [{"address": WALLET, "isSpam": True, "totalBalance": "not a number"}], "pageKey": None},
    }
    recorder = Recorder(lambda request: ok(pages[request.url.params.get("pageKey")]))
    result = list(make_client(recorder).get_contracts_for_owner(owner=WALLET, page_size=1))
    first, second = result[0].contracts[0], result[1].contracts[0]
    assert first == OwnerContract(
        address=CONTRACT,
        token_type="ERC1155",
        name="Such Items",
        symbol="SUCH",
        total_balance=1200,
        num_distinct_tokens_owned=3,
        is_spam=False,
        image_url="https://o.png",
        opensea=first.opensea,
    )
    assert first.opensea is not None
    assert first.opensea.floor_price == 0.1
    assert (second.is_spam, second.total_balance) == (True, None)
    assert result[0].total_count == 2
    assert recorder.params(1) == {"owner": [WALLET], "pageSize": ["1"], "withMetadata": ["true"], "pageKey": ["p2"]}


# -- retries and errors ---------------------------------------------------------------------------------------


def test_429_honours_retry_after_seconds() -> None:
    fake = FakeTime()
    recorder = Recorder(error(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"}), ok({"nfts": []}))
    page = make_client(recorder, fake).get_nfts_for_contract_page(contract=CONTRACT)
    assert page.nfts == ()
    assert fake.sleeps == [2.0]
    assert len(recorder.requests) == 2


def test_429_honours_retry_after_http_date() -> None:
    fake = FakeTime()
    when = format_datetime(NOW + timedelta(seconds=3), usegmt=True)
    recorder = Recorder(error(429, "rate limited", {"Retry-After": when}), ok({"nfts": []}))
    make_client(recorder, fake).get_nfts_for_contract_page(contract=CONTRACT)
    assert fake.sleeps == [3.0]


def test_429_adds_full_jitter_on_top_of_retry_after() -> None:
    fake = FakeTime()
    recorder = Recorder(error(429, "x", {"Retry-After": "1"}), error(429, "x", {"Retry-After": "1"}), ok({}))
    make_client(recorder, fake, jitter=lambda: 0.5).get_nfts_for_contract_page(contract=CONTRACT)
    assert fake.sleeps == [1.0 + 0.5 * 0.25, 1.0 + 0.5 * 0.5]


def test_429_without_retry_after_backs_off_with_jitter() -> None:
    fake = FakeTime()
    recorder = Recorder(error(429, "x"), error(429, "x"), ok({}))
    make_client(recorder, fake, jitter=lambda: 1.0).get_nfts_for_contract_page(contract=CONTRACT)
    assert fake.sleeps == [0.25, 0.5]


def test_persistent_429_raises_rate_limited_after_bounded_attempts() -> None:
    fake = FakeTime()
    recorder = Recorder(error(429, {"error": {"message": "capacity exceeded"}}, {"Retry-After": "1"}))
    with pytest.raises(UpstreamRateLimited) as caught:
        make_client(recorder, fake, max_attempts=4).get_nfts_for_contract_page(contract=CONTRACT)
    assert len(recorder.requests) == 4
    assert fake.sleeps == [1.0, 1.0, 1.0]
    assert caught.value.retry_after == 1.0
    assert caught.value.status == 429
    assert isinstance(caught.value, UpstreamUnavailable)
    assert "capacity exceeded" in str(caught.value)


def test_retry_after_beyond_the_budget_fails_at_once() -> None:
    fake = FakeTime()
    recorder = Recorder(error(429, "x", {"Retry-After": "3600"}))
    with pytest.raises(UpstreamRateLimited) as caught:
        make_client(recorder, fake, retry_budget_seconds=20).get_nfts_for_contract_page(contract=CONTRACT)
    assert caught.value.retry_after == 3600
    assert fake.sleeps == []
    assert len(recorder.requests) == 1


def test_the_time_budget_bounds_the_retries() -> None:
    fake = FakeTime()

    def slow_503(request: httpx.Request) -> httpx.Response:
        fake.now += 4.0  # each attempt takes 4 s
        return error(503, "busy")

    recorder = Recorder(slow_503)
    with pytest.raises(UpstreamUnavailable):
        make_client(
            recorder, fake, max_attempts=10, retry_budget_seconds=10, jitter=lambda: 1.0
        ).get_nfts_for_contract_page(contract=CONTRACT)
    assert len(recorder.requests) == 3  # 4 s + 0.25 + 4 s + 0.5 + 4 s: the next wait would pass 10 s
    assert fake.sleeps == [0.25, 0.5]


def test_5xx_is_retried_then_succeeds() -> None:
    fake = FakeTime()
    recorder = Recorder(error(500, "boom"), error(502, "bad gateway"), ok({"nfts": [nft_payload("1")]}))
    page = make_client(recorder, fake, jitter=lambda: 1.0).get_nfts_for_contract_page(contract=CONTRACT)
    assert [nft.token_id for nft in page.nfts] == ["1"]
    assert fake.sleeps == [0.25, 0.5]


def test_persistent_5xx_raises_unavailable() -> None:
    fake = FakeTime()
    recorder = Recorder(error(503, "Service Unavailable"))
    with pytest.raises(UpstreamUnavailable) as caught:
        make_client(recorder, fake, max_attempts=3).get_nfts_for_contract_page(contract=CONTRACT)
    assert not isinstance(caught.value, UpstreamRateLimited)
    assert caught.value.status == 503
    assert len(recorder.requests) == 3


def test_backoff_is_capped() -> None:
    fake = FakeTime()
    recorder = Recorder(error(500, "x"))
    with pytest.raises(UpstreamUnavailable):
        make_client(
            recorder, fake, max_attempts=8, retry_budget_seconds=100, jitter=lambda: 1.0
        ).get_nfts_for_contract_page(contract=CONTRACT)
    assert fake.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect timed out"), httpx.ConnectError("refused")],
)
def test_timeouts_and_connection_errors_are_retried(failure: Exception) -> None:
    fake = FakeTime()
    recorder = Recorder(failure, ok({"nfts": []}))
    make_client(recorder, fake).get_nfts_for_contract_page(contract=CONTRACT)
    assert len(recorder.requests) == 2
    recorder = Recorder(failure)
    with pytest.raises(UpstreamUnavailable) as caught:
        make_client(recorder, FakeTime(), max_attempts=2).get_nfts_for_contract_page(contract=CONTRACT)
    assert len(recorder.requests) == 2
    assert caught.value.status is None
    assert type(failure).__name__ in str(caught.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, UpstreamBadRequest),
        (401, UpstreamBadRequest),
        (403, UpstreamBadRequest),
        (404, UpstreamNotFound),
        (422, UpstreamBadRequest),
    ],
)
def test_other_4xx_fail_fast(status: int, kind: type[UpstreamError]) -> None:
    fake = FakeTime()
    recorder = Recorder(error(status, "nope"))
    with pytest.raises(kind) as caught:
        make_client(recorder, fake).get_nfts_for_contract_page(contract=CONTRACT)
    assert caught.value.status == status
    assert len(recorder.requests) == 1
    assert fake.sleeps == []


def test_an_unexpected_status_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        make_client(Recorder(httpx.Response(302, headers={"location": "/x"}))).get_nfts_for_contract_page(
            contract=CONTRACT
        )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"error": {"message": "contractAddress is invalid"}}, "contractAddress is invalid"),
        ({"error": "plain error string"}, "plain error string"),
        ({"message": "top-level message"}, "top-level message"),
        ("Bad Request: something\n  went wrong", "Bad Request: something went wrong"),
        ("", "Bad Request"),
        ({"error": {"code": 1}}, '{"error":{"code":1}}'),
    ],
)
def test_error_bodies_in_both_forms_become_the_detail(body: object, detail: str) -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        make_client(Recorder(error(400, body))).get_nfts_for_contract_page(contract=CONTRACT)
    assert caught.value.detail == detail
    assert caught.value.method == "getNFTsForContract"
    assert str(caught.value) == f"Alchemy getNFTsForContract failed (HTTP 400): {detail}"
    assert isinstance(caught.value, SuchMarketError)


def test_long_error_bodies_are_truncated() -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        make_client(Recorder(error(400, "x" * 10_000))).get_nfts_for_contract_page(contract=CONTRACT)
    assert len(caught.value.detail) == 300


# -- the key never leaks --------------------------------------------------------------------------------------


def echo_key(request: httpx.Request) -> httpx.Response:
    return error(401, {"error": {"message": f"Invalid key {API_KEY} for {request.url}"}})


@pytest.mark.parametrize(
    "answer",
    [
        echo_key,
        lambda request: error(500, f"failed {request.url}"),
        lambda request: error(429, f"{API_KEY} is over its limit", {"Retry-After": "0"}),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
)
def test_the_key_never_appears_in_errors_or_logs(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(Recorder(answer))
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError) as caught:
        client.get_nfts_for_contract_page(contract=CONTRACT)
    exception = caught.value
    texts = [
        str(exception),
        repr(exception),
        exception.detail,
        caplog.text,
        repr(client),
        repr(client._http._transport),
    ]
    for text in texts:
        assert API_KEY not in text
    assert exception.__cause__ is None
    assert exception.__suppress_context__ or exception.__context__ is None
    for record in caplog.records:  # structured fields too, not only the rendered message
        assert API_KEY not in str(record.__dict__)


def test_httpx_request_log_shows_the_placeholder(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        make_client(Recorder(ok({"nfts": []}))).get_nfts_for_contract_page(contract=CONTRACT)
    assert f"/nft/v3/{KEY_PLACEHOLDER}/getNFTsForContract" in caplog.text
    assert API_KEY not in caplog.text


def test_retry_warnings_name_the_method_not_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make_client(Recorder(error(503, "x"), ok({}))).get_contract_metadata(contract=CONTRACT)
    record = next(r for r in caplog.records if "retrying" in r.getMessage())
    assert record.__dict__["method"] == "getContractMetadata"
    assert API_KEY not in caplog.text


# -- settings and the container's client ------------------------------------------------------------------------


@pytest.fixture
def alchemy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("ALCHEMY_API_KEY", "ALCHEMY_API_KEY_SECRET_ARN", "ALCHEMY_BASE_URL", "ALCHEMY_NETWORK"):
        monkeypatch.delenv(name, raising=False)
    close_all()
    yield monkeypatch
    close_all()


def test_settings_need_a_key(alchemy_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="ALCHEMY_API_KEY"):
        load_settings(AlchemySettings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ALCHEMY_BASE_URL", "ftp://x"), ("ALCHEMY_NETWORK", "Base Mainnet"), ("ALCHEMY_MAX_ATTEMPTS", "0")],
)
def test_malformed_settings_name_the_variable(alchemy_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    alchemy_env.setenv("ALCHEMY_API_KEY", API_KEY)
    alchemy_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings(AlchemySettings)


def test_settings_keep_the_key_secret(alchemy_env: pytest.MonkeyPatch) -> None:
    alchemy_env.setenv("ALCHEMY_API_KEY", API_KEY)
    alchemy_env.setenv("ALCHEMY_BASE_URL", "http://127.0.0.1:8545")
    settings = load_settings(AlchemySettings)
    assert API_KEY not in repr(settings)
    assert API_KEY not in str(dataclasses.asdict(settings))
    assert settings.resolve_api_key() == API_KEY
    client = get_alchemy_client(settings)
    assert client is get_alchemy_client(settings)  # once per container
    assert client.origin == "http://127.0.0.1:8545"
    assert API_KEY not in repr(client)


def test_the_key_can_come_from_secrets_manager(alchemy_env: pytest.MonkeyPatch) -> None:
    alchemy_env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="alchemy-key", SecretString=API_KEY
        )["ARN"]
        alchemy_env.setenv("ALCHEMY_API_KEY_SECRET_ARN", arn)
        settings = load_settings(AlchemySettings)
        recorder = Recorder(ok({"address": CONTRACT, "tokenType": "ERC721"}))
        client = AlchemyClient.from_settings(settings, transport=httpx.MockTransport(recorder))
        client.get_contract_metadata(contract=CONTRACT)
    assert recorder.requests[0].url.path == f"/nft/v3/{API_KEY}/getContractMetadata"
    assert client.max_attempts == 4
    client.close()


# -- parsers -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("not a date", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_models_are_frozen() -> None:
    nft = Nft.from_alchemy(nft_payload())
    with pytest.raises(ValidationError):
        nft.token_id = "2"  # type: ignore[misc]


# -- properties ----------------------------------------------------------------------------------------------------

UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
OPTIONAL_NFT_FIELDS = (
    "tokenType",
    "name",
    "title",
    "description",
    "image",
    "raw",
    "tokenUri",
    "balance",
    "timeLastUpdated",
    "contract",
    "metadata",
    "error",
)


@given(UINT256, st.sampled_from(["dec", "int", "hex", "HEX", "padded", "spaced"]))
def test_property_token_id_forms_agree(number: int, form: str) -> None:
    text = {
        "dec": str(number),
        "int": number,
        "hex": hex(number),
        "HEX": "0X" + format(number, "X"),
        "padded": "0x" + format(number, "064x"),
        "spaced": f"  {number}\t",
    }[form]
    assert normalize_token_id(text) == str(number)


@given(st.integers(max_value=-1) | st.integers(min_value=2**256))
def test_property_out_of_range_token_ids_are_rejected(number: int) -> None:
    for form in (number, str(number), hex(number) if number > 0 else str(number)):
        with pytest.raises(ValueError, match="must be"):
            normalize_token_id(form)


@given(st.text(max_size=80))
def test_property_token_id_parsing_never_crashes(text: str) -> None:
    try:
        result = normalize_token_id(text)
    except ValueError:
        return
    assert result.isdigit()
    assert 0 <= int(result) < 2**256


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    token=UINT256,
    fields=st.dictionaries(st.sampled_from(OPTIONAL_NFT_FIELDS), JSON, max_size=8),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(
            lambda k: k not in OPTIONAL_NFT_FIELDS and k not in {"tokenId", "id", "contractAddress"}
        ),
        JSON,
        max_size=4,
    ),
)
def test_property_nft_payloads_with_any_optional_fields_parse(
    token: int, fields: dict[str, Any], extra: dict[str, Any]
) -> None:
    payload = {**extra, **fields, "tokenId": hex(token) if token % 2 else str(token)}
    nft = Nft.from_alchemy(payload, contract_address=MIXED)
    assert nft.token_id == str(token)
    assert nft.contract_address in {CONTRACT, nft.contract_address.lower()}
    assert all(isinstance(a.value, str) and a.trait_type for a in nft.attributes)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(payload=JSON)
def test_property_arbitrary_payloads_parse_or_raise_value_error(payload: Any) -> None:
    for parse in (
        lambda: Nft.from_alchemy(payload),
        lambda: ContractMetadata.from_alchemy(payload),
        lambda: OwnerContract.from_alchemy(payload),
        lambda: ContractOwner.from_alchemy(payload),
    ):
        with contextlib.suppress(ValueError):
            parse()
    parse_attributes(payload)
    parse_attributes({"attributes": payload})


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=100)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "symbol",
                "totalSupply",
                "tokenType",
                "contractDeployer",
                "deployedBlockNumber",
                "isSpam",
                "openSeaMetadata",
                "openseaMetadata",
                "totalBalance",
                "numDistinctTokensOwned",
                "image",
            ]
        ),
        JSON,
        max_size=8,
    ),
)
def test_property_contract_payloads_with_any_optional_fields_parse(fields: dict[str, Any]) -> None:
    payload = {**fields, "address": MIXED}
    assert ContractMetadata.from_alchemy(payload).address == CONTRACT
    assert OwnerContract.from_alchemy(payload).address == CONTRACT


@settings(max_examples=50, deadline=None)
@given(body=JSON, status=st.sampled_from([400, 401, 404, 429, 500, 503]))
def test_property_any_error_body_becomes_an_upstream_error(body: Any, status: int) -> None:
    client = make_client(Recorder(httpx.Response(status, content=json.dumps(body).encode())), max_attempts=2)
    with pytest.raises(UpstreamError) as caught:
        client.get_nfts_for_contract_page(contract=CONTRACT)
    assert API_KEY not in str(caught.value)
