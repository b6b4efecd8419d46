"""The real Alchemy client against the running stub over HTTP: complete paging, owners, faults, counters,
and the stub's key check (only its own key is served, as Alchemy serves only the account's key).

Each test checks what the client reads against the stub's ground truth, and how many requests it took.
Waits between retries are recorded instead of slept, so fault-injection tests stay fast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from local.alchemy_stub import (
    ERC721_CONTRACT,
    ERC721_TOKEN_COUNT,
    ERC721_WALLET_COUNT,
    ERC1155_CONTRACT,
    ERC1155_TOKEN_COUNT,
    LARGE_CONTRACT,
    LARGE_TOKEN_COUNT,
    NOT_A_CONTRACT,
    NOT_AN_NFT_CONTRACT,
    SPAM_CONTRACTS,
    AlchemyStub,
    broken_token_ids,
    distinct_owners,
    spam_airdrops,
    token_attributes,
    token_count,
    token_holders,
    trait_counts,
    wallet_address,
    wallet_holdings,
)
from local.neynar_stub import NeynarStub
from such_market.upstream.alchemy import AlchemyClient
from such_market.upstream.errors import UpstreamBadRequest, UpstreamUnavailable

API_KEY = "stub-key-0123456789"
WRONG_KEY = "wrong-key-9876543210"


@pytest.fixture(scope="module")
def stub() -> Iterator[AlchemyStub]:
    with AlchemyStub(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def fresh_stub(stub: AlchemyStub) -> Iterator[AlchemyStub]:
    """The module's stub with counters reset and no fault injection (restored after the test)."""
    stub.reset_counters()
    yield stub
    stub.latency_ms = 0
    stub.rate_limit_every = 0
    stub.server_error_every = 0
    stub.retry_after_seconds = 1
    stub.reset_counters()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fresh_stub: AlchemyStub, sleeps: list[float]) -> Iterator[AlchemyClient]:
    with AlchemyClient(api_key=API_KEY, base_url=fresh_stub.base_url, sleep=sleeps.append) as alchemy:
        yield alchemy


def test_the_erc721_collection_pages_completely(client: AlchemyClient, fresh_stub: AlchemyStub) -> None:
    pages = list(client.iter_nfts_for_contract(contract=ERC721_CONTRACT))
    nfts = [nft for page in pages for nft in page.nfts]

    assert len(pages) == ERC721_TOKEN_COUNT // 100
    assert pages[-1].page_key is None
    assert [nft.token_id for nft in nfts] == [str(token_id) for token_id in range(ERC721_TOKEN_COUNT)]
    assert len(nfts) == token_count(ERC721_CONTRACT)
    assert {nft.contract_address for nft in nfts} == {ERC721_CONTRACT}
    assert fresh_stub.request_count("getNFTsForContract") == 100
    assert fresh_stub.request_count("getNFTsForContract", contract=ERC721_CONTRACT) == 100
    assert fresh_stub.request_counts() == {"getNFTsForContract": 100}

    counts: dict[str, Counter[str]] = {}
    for nft in nfts:
        for attribute in nft.attributes:
            counts.setdefault(attribute.trait_type, Counter())[attribute.value] += 1
    assert {trait: dict(values) for trait, values in counts.items()} == trait_counts(ERC721_CONTRACT)

    broken = {nft.token_id for nft in nfts if nft.metadata_error}
    assert broken == broken_token_ids(ERC721_CONTRACT)
    assert broken  # the collection really has broken tokens
    assert all(not nft.attributes and nft.title is None for nft in nfts if nft.metadata_error)
    assert all(nft.title and nft.image_url and nft.thumbnail_url for nft in nfts if not nft.metadata_error)


def test_ground_truth_is_skewed_and_complete() -> None:
    counts = trait_counts(ERC721_CONTRACT)
    assert set(counts) == {"Background", "Body", "Eyes", "Hat", "Rarity", "Level"}
    rarity = counts["Rarity"]
    assert rarity["Common"] > 5 * rarity["Rare"] > 5 * rarity["Legendary"] > 0
    tokens_with_metadata = ERC721_TOKEN_COUNT - len(broken_token_ids(ERC721_CONTRACT))
    assert sum(counts["Background"].values()) == tokens_with_metadata
    assert sum(counts["Hat"].values()) < tokens_with_metadata  # some tokens have no hat
    assert len(distinct_owners(ERC721_CONTRACT)) == ERC721_WALLET_COUNT
    assert token_attributes(ERC721_CONTRACT, "1") == token_attributes(ERC721_CONTRACT, 1)


def test_without_metadata_pages_carry_ids_only(client: AlchemyClient) -> None:
    page = client.get_nfts_for_contract_page(contract=ERC1155_CONTRACT, with_metadata=False, limit=10)
    assert [nft.token_id for nft in page.nfts] == [str(token_id) for token_id in range(1, 11)]
    assert page.nfts[0].title is None
    assert page.page_key == hex(11)


def test_paging_resumes_from_a_start_token_in_the_large_collection(client: AlchemyClient) -> None:
    start = hex(LARGE_TOKEN_COUNT - 150)
    pages = list(client.iter_nfts_for_contract(contract=LARGE_CONTRACT, start_token=start))
    assert [len(page.nfts) for page in pages] == [100, 50]
    assert pages[-1].nfts[-1].token_id == str(LARGE_TOKEN_COUNT - 1)


def test_contract_metadata(client: AlchemyClient) -> None:
    metadata = client.get_contract_metadata(contract=ERC721_CONTRACT.upper().replace("0X", "0x"))
    assert metadata is not None
    assert (metadata.address, metadata.token_type, metadata.total_supply) == (ERC721_CONTRACT, "ERC721", "10000")
    assert metadata.opensea is not None
    assert metadata.opensea.collection_name == "Such Punks"
    erc1155 = client.get_contract_metadata(contract=ERC1155_CONTRACT)
    assert erc1155 is not None
    assert erc1155.token_type == "ERC1155"


@pytest.mark.parametrize("address", [NOT_A_CONTRACT, NOT_AN_NFT_CONTRACT, "0x" + "12" * 20])
def test_an_address_without_a_collection_is_none(client: AlchemyClient, address: str) -> None:
    assert client.get_contract_metadata(contract=address) is None


def test_single_tokens(client: AlchemyClient) -> None:
    nft = client.get_nft_metadata(contract=ERC721_CONTRACT, token_id="0x2a")
    assert nft is not None
    assert nft.token_id == "42"
    assert [(a.trait_type, a.value) for a in nft.attributes] == token_attributes(ERC721_CONTRACT, 42)
    broken = sorted(broken_token_ids(ERC721_CONTRACT), key=int)[0]
    broken_nft = client.get_nft_metadata(contract=ERC721_CONTRACT, token_id=broken)
    assert broken_nft is not None
    assert broken_nft.metadata_error
    assert broken_nft.attributes == ()
    assert client.get_nft_metadata(contract=ERC721_CONTRACT, token_id=ERC721_TOKEN_COUNT) is None
    assert client.get_nft_metadata(contract=NOT_A_CONTRACT, token_id=1) is None


def test_erc1155_owners_come_with_balances(client: AlchemyClient, fresh_stub: AlchemyStub) -> None:
    truth = token_holders(ERC1155_CONTRACT)
    assert len(truth) == ERC1155_TOKEN_COUNT
    token_id = max(truth, key=lambda token: len(truth[token]))  # the token with the most holders
    assert len(truth[token_id]) > 1

    owners = client.get_owners_for_nft(contract=ERC1155_CONTRACT, token_id=token_id)

    assert {owner.address: owner.balance for owner in owners} == {
        holder: str(balance) for holder, balance in truth[token_id].items()
    }
    assert any(int(owner.balance or 0) > 1 for owner in owners)
    assert fresh_stub.request_count("getOwnersForNFT") == 1
    assert fresh_stub.request_count("getContractMetadata", contract=ERC1155_CONTRACT) == 1
    assert fresh_stub.request_count("getNFTsForOwner") == len(owners)


def test_erc721_owner_needs_no_balance_lookup(client: AlchemyClient, fresh_stub: AlchemyStub) -> None:
    owners = client.get_owners_for_nft(contract=ERC721_CONTRACT, token_id=7, token_type="ERC721")
    assert [(owner.address, owner.balance) for owner in owners] == [
        (holder, "1") for holder in token_holders(ERC721_CONTRACT)["7"]
    ]
    assert fresh_stub.request_counts() == {"getOwnersForNFT": 1}


@pytest.mark.parametrize("contract", [ERC721_CONTRACT, ERC1155_CONTRACT])
def test_owners_for_contract_with_token_balances(client: AlchemyClient, fresh_stub: AlchemyStub, contract: str) -> None:
    pages = list(client.get_owners_for_contract(contract=contract))
    grouped: dict[str, dict[str, int]] = {}
    for page in pages:
        for owner in page.owners:
            for entry in owner.token_balances:
                grouped.setdefault(entry.token_id, {})[owner.address] = int(entry.balance)
    assert grouped == token_holders(contract)
    owners = {owner.address for page in pages for owner in page.owners}
    assert owners == distinct_owners(contract)
    expected_pages = -(-len(owners) // fresh_stub.owners_page_size)
    assert fresh_stub.request_count("getOwnersForContract", contract=contract) == len(pages) == expected_pages


def test_wallet_tokens_and_contracts(client: AlchemyClient) -> None:
    wallet = wallet_address(3)
    holdings = wallet_holdings(wallet)
    assert len(holdings) >= 2  # this wallet holds several collections

    tokens = [nft for page in client.get_nfts_for_owner(owner=wallet, page_size=7) for nft in page.nfts]
    seen: dict[str, dict[str, int]] = {}
    for nft in tokens:
        seen.setdefault(nft.contract_address, {})[nft.token_id] = int(nft.balance or 0)
    assert seen == holdings

    only_721 = [
        nft
        for page in client.get_nfts_for_owner(owner=wallet, contract_addresses=[ERC721_CONTRACT], with_metadata=False)
        for nft in page.nfts
    ]
    assert {nft.token_id for nft in only_721} == set(holdings[ERC721_CONTRACT])

    contracts = [c for page in client.get_contracts_for_owner(owner=wallet, page_size=1) for c in page.contracts]
    assert [c.address for c in contracts] == sorted(holdings)
    for entry in contracts:
        assert entry.num_distinct_tokens_owned == len(holdings[entry.address])
        assert entry.total_balance == sum(holdings[entry.address].values())
        assert entry.is_spam is False


def test_spam_airdrops_are_listed_flagged_with_the_wallets_contracts(client: AlchemyClient) -> None:
    wallet = wallet_address(1)
    airdrops = spam_airdrops(wallet)
    assert set(airdrops) == set(SPAM_CONTRACTS)
    contracts = [c for page in client.get_contracts_for_owner(owner=wallet, page_size=2) for c in page.contracts]
    flagged = {c.address: c for c in contracts if c.is_spam}
    assert set(flagged) == set(airdrops)
    assert {c.address for c in contracts if c.is_spam is False} == set(wallet_holdings(wallet))
    for address, tokens in airdrops.items():
        assert flagged[address].total_balance == tokens
        metadata = client.get_contract_metadata(contract=address)
        assert metadata is not None
        assert metadata.is_spam is True
    erc721 = client.get_contract_metadata(contract=ERC721_CONTRACT)
    assert erc721 is not None
    assert erc721.is_spam is False


def test_injected_429s_are_retried(client: AlchemyClient, fresh_stub: AlchemyStub, sleeps: list[float]) -> None:
    fresh_stub.rate_limit_every = 3
    fresh_stub.retry_after_seconds = 2
    pages = list(client.iter_nfts_for_contract(contract=ERC1155_CONTRACT, limit=10))
    assert sum(len(page.nfts) for page in pages) == ERC1155_TOKEN_COUNT
    # 5 pages; requests 3 and 6 were 429s, each retried after Retry-After (+ jitter)
    assert fresh_stub.request_count("getNFTsForContract") == 7
    assert len(sleeps) == 2
    assert all(2.0 <= wait <= 2.25 for wait in sleeps)


def test_injected_5xx_are_retried(client: AlchemyClient, fresh_stub: AlchemyStub) -> None:
    fresh_stub.server_error_every = 2
    metadata = client.get_contract_metadata(contract=ERC721_CONTRACT)
    assert metadata is not None
    nft = client.get_nft_metadata(contract=ERC721_CONTRACT, token_id=1)  # request 2 fails, 3 succeeds
    assert nft is not None
    assert fresh_stub.request_count() == 3


def test_persistent_5xx_gives_up_after_bounded_attempts(fresh_stub: AlchemyStub, sleeps: list[float]) -> None:
    fresh_stub.server_error_every = 1
    with (
        AlchemyClient(api_key=API_KEY, base_url=fresh_stub.base_url, max_attempts=3, sleep=sleeps.append) as alchemy,
        pytest.raises(UpstreamUnavailable) as caught,
    ):
        alchemy.get_contract_metadata(contract=ERC721_CONTRACT)
    assert caught.value.status == 503
    assert "upstream overloaded" in caught.value.detail  # the plain-text error body
    assert fresh_stub.request_count("getContractMetadata") == 3
    assert len(sleeps) == 2


def test_slow_answers_time_out_and_are_retried(fresh_stub: AlchemyStub, sleeps: list[float]) -> None:
    fresh_stub.latency_ms = 300
    with (
        AlchemyClient(
            api_key=API_KEY,
            base_url=fresh_stub.base_url,
            read_timeout_seconds=0.05,
            max_attempts=2,
            sleep=sleeps.append,
        ) as alchemy,
        pytest.raises(UpstreamUnavailable, match="timed out"),
    ):
        alchemy.get_contract_metadata(contract=ERC721_CONTRACT)
    assert fresh_stub.request_count("getContractMetadata") == 2


def test_a_rejected_key_fails_fast_without_leaking(fresh_stub: AlchemyStub, sleeps: list[float]) -> None:
    with (
        AlchemyClient(api_key=WRONG_KEY, base_url=fresh_stub.base_url, sleep=sleeps.append) as alchemy,
        pytest.raises(UpstreamBadRequest) as caught,
    ):
        alchemy.get_contract_metadata(contract=ERC721_CONTRACT)
    assert caught.value.status == 401
    assert WRONG_KEY not in str(caught.value)
    assert "Must be authenticated" in str(caught.value)
    assert fresh_stub.request_count() == 1
    assert sleeps == []


def test_bad_parameters_get_alchemys_400_shape(fresh_stub: AlchemyStub) -> None:
    response = httpx.get(f"{fresh_stub.base_url}/nft/v3/{API_KEY}/getNFTsForContract?contractAddress=0x12")
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "contractAddress must be a valid address"}}
    assert httpx.get(f"{fresh_stub.base_url}/nft/v3/{API_KEY}/getUnknownThing").status_code == 404


def _contract_metadata(stub: AlchemyStub, key: str) -> httpx.Response:
    return httpx.get(f"{stub.base_url}/nft/v3/{key}/getContractMetadata?contractAddress={ERC721_CONTRACT}")


def test_its_own_key_is_served(fresh_stub: AlchemyStub) -> None:
    response = _contract_metadata(fresh_stub, fresh_stub.api_key)
    assert response.status_code == 200
    assert response.json()["name"] == "Such Punks"


@pytest.mark.parametrize("key", [WRONG_KEY, API_KEY.upper(), API_KEY + "0", API_KEY[:-1], ""])
def test_any_other_key_is_401_with_alchemys_shape(fresh_stub: AlchemyStub, key: str) -> None:
    response = _contract_metadata(fresh_stub, key)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": f"Must be authenticated! The API key {key} is not valid."}}
    assert fresh_stub.request_count("getContractMetadata") == 1


def test_the_stub_serves_the_key_it_is_given_and_has_a_default() -> None:
    with AlchemyStub() as default, AlchemyStub(api_key="another-key") as configured:
        assert (default.api_key, configured.api_key) == ("local-alchemy-key", "another-key")
        assert _contract_metadata(configured, "another-key").status_code == 200
        assert _contract_metadata(configured, default.api_key).status_code == 401


def test_the_neynar_stubs_key_is_refused(alchemy_stub: AlchemyStub, neynar_stub: NeynarStub) -> None:
    # Given both stubs as the tests and `make dev` run them, each with its own default key
    assert alchemy_stub.api_key != neynar_stub.api_key
    # When the Neynar key is sent to Alchemy, Then it is refused; Alchemy's own key is served
    assert _contract_metadata(alchemy_stub, neynar_stub.api_key).status_code == 401
    assert _contract_metadata(alchemy_stub, alchemy_stub.api_key).status_code == 200
