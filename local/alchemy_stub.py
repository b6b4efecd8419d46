"""An Alchemy NFT API v3 stub: deterministic collections over HTTP, for tests, benchmarks and ``make dev``.

``AlchemyStub`` serves ``GET /nft/v3/{apiKey}/{method}`` for getContractMetadata, getNFTsForContract,
getNFTMetadata, getOwnersForNFT, getOwnersForContract, getNFTsForOwner and getContractsForOwner with
Alchemy's v3 response shapes: addresses in mixed case, token ids and quantities as decimal strings,
``pageKey`` (hex next token id for getNFTsForContract, opaque elsewhere), per-token ``raw.error`` for
broken metadata, ``tokenType: NOT_A_CONTRACT`` for an address without code. Errors use Alchemy's forms:
``{"error":{"message":…}}`` for 400/401/429 and plain text for 5xx. Like Alchemy, it accepts one key,
its ``api_key`` (``DEFAULT_API_KEY`` unless given, and unlike the Neynar stub's): any other key in the
path gets a 401 whose message echoes that key (to prove clients redact it).

The data are generated from ``SEED`` by hashing, never by a random generator, so every run, thread and
process sees the same collections, and tokens of the 100k collection are generated only when asked:

- ``ERC721_CONTRACT``: 10,000 tokens (ids 0…9,999) with skewed traits (Background, Body, Eyes, Hat —
  absent on about a third of tokens —, Rarity, and a numeric Level), held by exactly 2,500 wallets;
  about one token in 400 has broken metadata (``raw.error``, no attributes);
- ``ERC1155_CONTRACT``: 50 token ids (1…50), each with 1 to 8 holders and balances up to 100;
- ``LARGE_CONTRACT``: 100,000 tokens for benchmarks, held by 20,000 wallets, five tokens each;
- ``SPAM_CONTRACTS``: two airdropped collections that Alchemy flags as spam (``isSpam: true`` in
  getContractMetadata and getContractsForOwner), sent to about half of the wallets that hold anything
  (``spam_airdrops``); only getContractMetadata and getContractsForOwner know them;
- ``NOT_A_CONTRACT`` (no code) and ``NOT_AN_NFT_CONTRACT`` (an ERC-20): getContractMetadata answers
  ``NOT_A_CONTRACT`` / ``NO_SUPPORTED_NFT_STANDARD`` like Alchemy; so does every other address.

Ground truth for tests: ``token_count``, ``trait_counts``, ``broken_token_ids``, ``token_attributes``,
``token_holders``, ``distinct_owners``, ``wallet_address``, ``wallet_holdings``, ``spam_airdrops``.

Fault injection, changeable while running: ``latency_ms`` (added to every request), ``rate_limit_every``
(every Nth request answers 429 with ``Retry-After: retry_after_seconds``), ``server_error_every`` (every
Nth request answers 503). ``request_count(method, contract=…)`` counts every request received,
injected failures included, per method and per (method, contract); ``peak_in_flight(method)`` is the
most requests of a method it held at once (how parallel a client really was). Run it alone with
``python -m local.alchemy_stub [--port N] [--api-key KEY]``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from local.stub_server import Answer, StubServer, stub_main

SEED: Final = "such-market-stub-v1"
ERC721_CONTRACT: Final = "0x5a4d000000000000000000000000000000000721"
ERC721_TOKEN_COUNT: Final = 10_000
ERC721_WALLET_COUNT: Final = 2_500
ERC1155_CONTRACT: Final = "0x5a4d000000000000000000000000000000001155"
ERC1155_TOKEN_COUNT: Final = 50
ERC1155_MAX_HOLDERS: Final = 8
LARGE_CONTRACT: Final = "0x5a4d000000000000000000000000000000100000"
LARGE_TOKEN_COUNT: Final = 100_000
LARGE_WALLET_COUNT: Final = 20_000
SPAM_CONTRACTS: Final = (
    "0x5a4d0000000000000000000000000000000005a1",
    "0x5a4d0000000000000000000000000000000005a2",
)
SPAM_SHARE: Final = 0.5
"""The share of holding wallets that received the spam airdrops."""
NOT_A_CONTRACT: Final = "0x5a4d00000000000000000000000000000000dead"
NOT_AN_NFT_CONTRACT: Final = "0x5a4d000000000000000000000000000000000e20"
DEFAULT_API_KEY: Final = "local-alchemy-key"
MAX_PAGE_SIZE: Final = 100
DEFAULT_OWNERS_PAGE_SIZE: Final = 1000
BROKEN_METADATA_ERRORS: Final = (
    "Failed to get token uri",
    "Contract returned a broken token uri, do not retry",
    "IPFS gateway timed out",
)
NONEXISTENT_TOKEN_ERROR: Final = "Token does not exist"

TraitTable = Mapping[str, tuple[tuple[str | int | None, int], ...]]

COLLECTION_TRAITS: Final[TraitTable] = {
    "Background": (("Blue", 40), ("Red", 25), ("Green", 15), ("Purple", 12), ("Gold", 6), ("Cosmic", 2)),
    "Body": (("Ape", 25), ("Robot", 30), ("Human", 20), ("Zombie", 20), ("Alien", 5)),
    "Eyes": (("Normal", 50), ("Sleepy", 20), ("3D", 15), ("Laser", 10), ("Diamond", 5)),
    "Hat": ((None, 35), ("Cap", 25), ("Beanie", 20), ("Fez", 15), ("Crown", 3), ("Halo", 2)),
    "Rarity": (("Common", 60), ("Uncommon", 25), ("Rare", 10), ("Epic", 4), ("Legendary", 1)),
    "Level": ((1, 30), (2, 25), (3, 20), (4, 15), (5, 10)),
}
"""Trait types, values and weights of the ERC-721 and the large collection (``None``: trait absent)."""

ITEM_TRAITS: Final[TraitTable] = {
    "Type": (("Potion", 50), ("Sword", 30), ("Shield", 20)),
    "Element": (("Fire", 40), ("Water", 35), ("Earth", 25)),
}
"""Trait types of the ERC-1155 collection."""


@dataclass(frozen=True)
class StubCollection:
    """One generated collection."""

    address: str
    name: str
    symbol: str
    token_type: str
    first_token_id: int
    token_count: int
    traits: TraitTable
    broken_one_in: int
    deployed_block: int

    @property
    def token_ids(self) -> range:
        return range(self.first_token_id, self.first_token_id + self.token_count)

    def has_token(self, token_id: int) -> bool:
        return self.first_token_id <= token_id < self.first_token_id + self.token_count


COLLECTIONS: Final[Mapping[str, StubCollection]] = {
    collection.address: collection
    for collection in (
        StubCollection(
            ERC721_CONTRACT, "Such Punks", "SUCH", "ERC721", 0, ERC721_TOKEN_COUNT, COLLECTION_TRAITS, 400, 1
        ),
        StubCollection(ERC1155_CONTRACT, "Such Items", "ITEM", "ERC1155", 1, ERC1155_TOKEN_COUNT, ITEM_TRAITS, 0, 2),
        StubCollection(LARGE_CONTRACT, "Much Punks", "MUCH", "ERC721", 0, LARGE_TOKEN_COUNT, COLLECTION_TRAITS, 400, 3),
    )
}


# --------------------------------------------------------------------------------------------------
# Deterministic data


def _unit(*parts: object) -> float:
    """A number in [0, 1) determined by ``parts`` (and ``SEED``)."""
    text = "|".join(str(part) for part in (SEED, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) / 2**64


def _pick(options: tuple[tuple[str | int | None, int], ...], unit: float) -> str | int | None:
    total = sum(weight for _, weight in options)
    point = unit * total
    for value, weight in options:
        if point < weight:
            return value
        point -= weight
    return options[-1][0]


def _collection(contract: str) -> StubCollection:
    collection = COLLECTIONS.get(contract.lower())
    if collection is None:
        raise KeyError(f"not a stub collection: {contract}")
    return collection


@functools.lru_cache(maxsize=65_536)
def wallet_address(index: int) -> str:
    """The lower-case address of stub wallet ``index`` (the same in every run)."""
    return "0x" + hashlib.blake2b(f"{SEED}|wallet|{index}".encode(), digest_size=20).hexdigest()


def _mixed_case(address: str) -> str:
    """``address`` with some letters upper-cased, as Alchemy's checksummed addresses look."""
    return "0x" + "".join(char.upper() if index % 3 == 0 else char for index, char in enumerate(address[2:]))


def is_broken(contract: str, token_id: int) -> bool:
    """Whether the token's metadata is broken (``raw.error`` set, no attributes)."""
    collection = _collection(contract)
    if not collection.broken_one_in or not collection.has_token(token_id):
        return False
    return int(_unit("broken", collection.address, token_id) * collection.broken_one_in) == 0


@functools.lru_cache(maxsize=65_536)
def _raw_attributes(contract: str, token_id: int) -> tuple[tuple[str, str | int], ...]:
    collection = _collection(contract)
    if is_broken(contract, token_id):
        return ()
    picked: list[tuple[str, str | int]] = []
    for trait_type, options in collection.traits.items():
        value = _pick(options, _unit("trait", collection.address, token_id, trait_type))
        if value is not None:
            picked.append((trait_type, value))
    return tuple(picked)


def token_attributes(contract: str, token_id: int | str) -> list[tuple[str, str]]:
    """The token's ``(trait_type, value)`` pairs with values as strings (empty for broken tokens)."""
    return [(trait_type, str(value)) for trait_type, value in _raw_attributes(contract.lower(), int(token_id))]


def token_count(contract: str) -> int:
    """How many tokens the collection has (broken ones included)."""
    return _collection(contract).token_count


@functools.cache
def _trait_counts(contract: str) -> Mapping[str, Mapping[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for token_id in _collection(contract).token_ids:
        for trait_type, value in _raw_attributes(contract, token_id):
            counts.setdefault(trait_type, Counter())[str(value)] += 1
    return {trait_type: dict(counter) for trait_type, counter in counts.items()}


def trait_counts(contract: str) -> dict[str, dict[str, int]]:
    """``{trait_type: {value: number of tokens}}`` over the collection's tokens (broken ones have none)."""
    return {trait_type: dict(values) for trait_type, values in _trait_counts(contract.lower()).items()}


@functools.cache
def _broken_token_ids(contract: str) -> frozenset[str]:
    return frozenset(str(token_id) for token_id in _collection(contract).token_ids if is_broken(contract, token_id))


def broken_token_ids(contract: str) -> frozenset[str]:
    """The ids (decimal strings) of the collection's tokens with broken metadata."""
    return _broken_token_ids(contract.lower())


def _holders_of(collection: StubCollection, token_id: int) -> dict[str, int]:
    if collection.address == ERC721_CONTRACT:
        if token_id < ERC721_WALLET_COUNT:
            index = token_id  # every wallet holds at least one token
        else:  # the rest is skewed towards low wallet indexes, like real collections' whales
            index = min(ERC721_WALLET_COUNT - 1, int(ERC721_WALLET_COUNT * _unit("owner", token_id) ** 2))
        return {wallet_address(index): 1}
    if collection.address == LARGE_CONTRACT:
        return {wallet_address((token_id * 7919) % LARGE_WALLET_COUNT): 1}
    holders: dict[str, int] = {}
    for slot in range(1 + int(_unit("holders", token_id) * ERC1155_MAX_HOLDERS)):
        address = wallet_address(int(_unit("holder", token_id, slot) * ERC721_WALLET_COUNT))
        holders[address] = holders.get(address, 0) + 1 + int(_unit("balance", token_id, slot) * 100)
    return holders


@functools.cache
def _token_holders(contract: str) -> Mapping[int, Mapping[str, int]]:
    collection = _collection(contract)
    return {token_id: _holders_of(collection, token_id) for token_id in collection.token_ids}


def token_holders(contract: str) -> dict[str, dict[str, int]]:
    """``{token_id: {owner: balance}}`` for every token of the collection (ERC-721 balances are 1)."""
    return {str(token_id): dict(holders) for token_id, holders in _token_holders(contract.lower()).items()}


@functools.cache
def _holdings_by_owner(contract: str) -> Mapping[str, Mapping[int, int]]:
    by_owner: dict[str, dict[int, int]] = {}
    for token_id, holders in _token_holders(contract).items():
        for owner, balance in holders.items():
            by_owner.setdefault(owner, {})[token_id] = balance
    return by_owner


def distinct_owners(contract: str) -> frozenset[str]:
    """The collection's distinct holders (lower-case)."""
    return frozenset(_holdings_by_owner(contract.lower()))


def wallet_holdings(owner: str) -> dict[str, dict[str, int]]:
    """``{contract: {token_id: balance}}`` of everything ``owner`` holds in the stub collections."""
    wallet = owner.lower()
    holdings: dict[str, dict[str, int]] = {}
    for contract in sorted(COLLECTIONS):
        tokens = _holdings_by_owner(contract).get(wallet)
        if tokens:
            holdings[contract] = {str(token_id): balance for token_id, balance in sorted(tokens.items())}
    return holdings


def spam_airdrops(owner: str) -> dict[str, int]:
    """``{spam contract: tokens}`` airdropped to ``owner``: both spam collections, one or two tokens each,
    for about half of the wallets that hold something (none for the others)."""
    wallet = owner.lower()
    if not wallet_holdings(wallet) or _unit("spam", wallet) >= SPAM_SHARE:
        return {}
    return {contract: 1 + int(_unit("airdrop", wallet, contract) * 2) for contract in SPAM_CONTRACTS}


def _spam_contract(address: str) -> dict[str, Any]:
    number = SPAM_CONTRACTS.index(address) + 1
    return {
        "address": _mixed_case(address),
        "name": f"Claim Your Reward {number}",
        "symbol": f"CLAIM{number}",
        "totalSupply": "1000000",
        "tokenType": "ERC1155",
        "contractDeployer": _mixed_case(wallet_address(2_000_000 + number)),
        "deployedBlockNumber": 2_000_000 + number,
        "isSpam": True,
        "spamClassifications": ["Erc721DishonestTotalSupply", "OwnedByMostHoneyPots"],
        "openSeaMetadata": {"floorPrice": None, "collectionName": None, "lastIngestedAt": None},
    }


# --------------------------------------------------------------------------------------------------
# Alchemy v3 shapes


def _opensea(collection: StubCollection) -> dict[str, Any]:
    slug = collection.name.lower().replace(" ", "-")
    return {
        "floorPrice": round(0.01 + _unit("floor", collection.address) * 2, 4),
        "collectionName": collection.name,
        "collectionSlug": slug,
        "safelistRequestStatus": "not_requested",
        "imageUrl": f"https://images.such-market.invalid/{slug}/logo.png",
        "bannerImageUrl": None,
        "description": f"{collection.name}: a generated collection of the such-market stub.",
        "externalUrl": None,
        "twitterUsername": None,
        "discordUrl": None,
        "lastIngestedAt": "2024-05-01T00:00:00.000Z",
    }


def _contract(collection: StubCollection) -> dict[str, Any]:
    return {
        "address": _mixed_case(collection.address),
        "name": collection.name,
        "symbol": collection.symbol,
        "totalSupply": str(collection.token_count),
        "tokenType": collection.token_type,
        "contractDeployer": _mixed_case(wallet_address(1_000_000 + collection.deployed_block)),
        "deployedBlockNumber": 1_000_000 * collection.deployed_block,
        "openSeaMetadata": _opensea(collection),
    }


def _no_collection(address: str, token_type: str) -> dict[str, Any]:
    return {
        "address": _mixed_case(address),
        "name": None,
        "symbol": None,
        "totalSupply": None,
        "tokenType": token_type,
        "contractDeployer": None,
        "deployedBlockNumber": None,
        "openSeaMetadata": {"floorPrice": None, "collectionName": None, "lastIngestedAt": None},
    }


def _image(slug: str, token_id: int) -> dict[str, Any]:
    return {
        "cachedUrl": f"https://nft-cdn.such-market.invalid/{slug}/{token_id}.png",
        "thumbnailUrl": f"https://nft-cdn.such-market.invalid/{slug}/{token_id}-256.png",
        "pngUrl": f"https://nft-cdn.such-market.invalid/{slug}/{token_id}.png",
        "contentType": "image/png",
        "size": 20_000 + token_id % 5_000,
        "originalUrl": f"ipfs://bafy{slug.replace('-', '')}/{token_id}.png",
    }


_EMPTY_IMAGE: Final = dict.fromkeys(("cachedUrl", "thumbnailUrl", "pngUrl", "contentType", "size", "originalUrl"))


def _missing_nft(address: str, collection: StubCollection | None, token_id: int) -> dict[str, Any]:
    """What getNFTMetadata answers for a token that does not exist: 200 with ``raw.error``."""
    contract = _contract(collection) if collection else _no_collection(address, "UNKNOWN")
    return {
        "contract": {**contract, "isSpam": None, "spamClassifications": []},
        "tokenId": str(token_id),
        "tokenType": collection.token_type if collection else "UNKNOWN",
        "name": None,
        "description": None,
        "tokenUri": None,
        "image": dict(_EMPTY_IMAGE),
        "raw": {"tokenUri": None, "metadata": {}, "error": NONEXISTENT_TOKEN_ERROR},
        "collection": None,
        "mint": None,
        "owners": None,
        "timeLastUpdated": "2024-05-01T00:00:00.000Z",
    }


def _nft(collection: StubCollection, token_id: int) -> dict[str, Any]:
    slug = collection.name.lower().replace(" ", "-")
    token_uri = f"https://metadata.such-market.invalid/{slug}/{token_id}.json"
    contract = {**_contract(collection), "isSpam": None, "spamClassifications": []}
    base = {
        "contract": contract,
        "tokenId": str(token_id),
        "tokenType": collection.token_type,
        "tokenUri": token_uri,
        "collection": {"name": collection.name, "slug": slug, "externalUrl": None, "bannerImageUrl": None},
        "mint": {"mintAddress": None, "blockNumber": None, "timestamp": None, "transactionHash": None},
        "owners": None,
        "timeLastUpdated": "2024-05-01T00:00:00.000Z",
    }
    if is_broken(collection.address, token_id):
        error = BROKEN_METADATA_ERRORS[token_id % len(BROKEN_METADATA_ERRORS)]
        return {
            **base,
            "name": None,
            "description": None,
            "image": dict(_EMPTY_IMAGE),
            "raw": {"tokenUri": token_uri, "metadata": {}, "error": error},
        }
    title = f"{collection.name} #{token_id}"
    description = f"{title}, generated by the such-market stub."
    attributes = [
        {"trait_type": trait, "value": value} for trait, value in _raw_attributes(collection.address, token_id)
    ]
    image = _image(slug, token_id)
    return {
        **base,
        "name": title,
        "description": description,
        "image": image,
        "raw": {
            "tokenUri": token_uri,
            "metadata": {
                "name": title,
                "description": description,
                "image": image["originalUrl"],
                "attributes": attributes,
            },
            "error": None,
        },
    }


# --------------------------------------------------------------------------------------------------
# Request handling


class _BadRequestError(Exception):
    """A request the real API would answer with 400."""


type _Answer = tuple[int, bytes, dict[str, str]]
type _Params = dict[str, list[str]]


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> _Answer:
    return status, orjson.dumps(body), {"Content-Type": "application/json", **(headers or {})}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    return _json(status, {"error": {"message": message}}, headers)


def _one(params: _Params, name: str, default: str | None = None) -> str | None:
    values = params.get(name)
    return values[0] if values else default


def _address(params: _Params, name: str) -> str:
    value = (_one(params, name) or "").strip()
    if len(value) != 42 or not value.startswith("0x"):
        raise _BadRequestError(f"{name} must be a valid address")
    try:
        int(value[2:], 16)
    except ValueError:
        raise _BadRequestError(f"{name} must be a valid address") from None
    return value.lower()


def _uint(params: _Params, name: str, default: int | None = None) -> int:
    value = _one(params, name)
    if value is None or value == "":
        if default is None:
            raise _BadRequestError(f"{name} is required")
        return default
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise _BadRequestError(f"{name} must be an integer") from None


def _flag(params: _Params, name: str, *, default: bool) -> bool:
    value = _one(params, name)
    return default if value is None else value.strip().lower() == "true"


def _page_size(params: _Params, name: str, maximum: int = MAX_PAGE_SIZE) -> int:
    size = _uint(params, name, maximum)
    if size < 1:
        raise _BadRequestError(f"{name} must be positive")
    return min(size, maximum)


def _encode_key(offset: int) -> str:
    return base64.urlsafe_b64encode(f"stub:{offset}".encode()).decode().rstrip("=")


def _offset(params: _Params) -> int:
    key = _one(params, "pageKey")
    if not key:
        return 0
    try:
        text = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
        prefix, number = text.split(":")
        if prefix != "stub":
            raise ValueError(prefix)
        return int(number)
    except ValueError:
        raise _BadRequestError("invalid pageKey") from None


def _next_key(offset: int, size: int, total: int) -> str | None:
    return _encode_key(offset + size) if offset + size < total else None


def get_contract_metadata(params: _Params) -> _Answer:
    address = _address(params, "contractAddress")
    collection = COLLECTIONS.get(address)
    if collection is not None:
        return _json(200, {**_contract(collection), "isSpam": False, "spamClassifications": []})
    if address in SPAM_CONTRACTS:
        return _json(200, _spam_contract(address))
    kind = "NO_SUPPORTED_NFT_STANDARD" if address == NOT_AN_NFT_CONTRACT else "NOT_A_CONTRACT"
    return _json(200, _no_collection(address, kind))


def get_nfts_for_contract(params: _Params) -> _Answer:
    address = _address(params, "contractAddress")
    collection = COLLECTIONS.get(address)
    if collection is None:
        return _json(200, {"nfts": [], "pageKey": None})
    limit = _page_size(params, "limit")
    with_metadata = _flag(params, "withMetadata", default=True)
    start = max(_uint(params, "startToken", collection.first_token_id), collection.first_token_id)
    end = collection.first_token_id + collection.token_count
    ids = range(start, min(start + limit, end))
    if with_metadata:
        nfts = [_nft(collection, token_id) for token_id in ids]
    else:
        nfts = [{"tokenId": str(token_id)} for token_id in ids]
    next_token = start + limit
    return _json(200, {"nfts": nfts, "pageKey": hex(next_token) if next_token < end else None})


def get_nft_metadata(params: _Params) -> _Answer:
    address = _address(params, "contractAddress")
    token_id = _uint(params, "tokenId")
    collection = COLLECTIONS.get(address)
    if collection is None or not collection.has_token(token_id):
        return _json(200, _missing_nft(address, collection, token_id))
    return _json(200, _nft(collection, token_id))


def get_owners_for_nft(params: _Params) -> _Answer:
    address = _address(params, "contractAddress")
    token_id = _uint(params, "tokenId")
    collection = COLLECTIONS.get(address)
    holders = _token_holders(address).get(token_id, {}) if collection is not None else {}
    return _json(200, {"owners": [_mixed_case(owner) for owner in sorted(holders)], "pageKey": None})


def get_owners_for_contract(params: _Params, *, page_size: int) -> _Answer:
    address = _address(params, "contractAddress")
    with_balances = _flag(params, "withTokenBalances", default=False)
    if address not in COLLECTIONS:
        return _json(200, {"owners": [], "pageKey": None})
    by_owner = _holdings_by_owner(address)
    owners = sorted(by_owner)
    offset = _offset(params)
    page = owners[offset : offset + page_size]
    items: list[object]
    if with_balances:
        items = [
            {
                "ownerAddress": _mixed_case(owner),
                "tokenBalances": [
                    {"tokenId": str(token_id), "balance": str(balance)}
                    for token_id, balance in sorted(by_owner[owner].items())
                ],
            }
            for owner in page
        ]
    else:
        items = [_mixed_case(owner) for owner in page]
    return _json(200, {"owners": items, "pageKey": _next_key(offset, page_size, len(owners))})


def get_nfts_for_owner(params: _Params) -> _Answer:
    owner = _address(params, "owner")
    wanted = {value.lower() for value in params.get("contractAddresses[]", []) + params.get("contractAddresses", [])}
    with_metadata = _flag(params, "withMetadata", default=True)
    size = _page_size(params, "pageSize")
    offset = _offset(params)
    held = [
        (contract, int(token_id), balance)
        for contract, tokens in wallet_holdings(owner).items()
        if not wanted or contract in wanted
        for token_id, balance in tokens.items()
    ]
    items: list[dict[str, Any]] = []
    for contract, token_id, balance in held[offset : offset + size]:
        if with_metadata:
            items.append({**_nft(COLLECTIONS[contract], token_id), "balance": str(balance)})
        else:
            items.append({"contractAddress": _mixed_case(contract), "tokenId": str(token_id), "balance": str(balance)})
    return _json(
        200,
        {
            "ownedNfts": items,
            "totalCount": len(held),
            "validAt": {"blockNumber": 20_000_000, "blockHash": "0x" + "ab" * 32, "blockTimestamp": None},
            "pageKey": _next_key(offset, size, len(held)),
        },
    )


def get_contracts_for_owner(params: _Params) -> _Answer:
    owner = _address(params, "owner")
    size = _page_size(params, "pageSize")
    offset = _offset(params)
    listing = [(contract, tokens, False) for contract, tokens in wallet_holdings(owner).items()]
    listing += [(contract, {"1": count}, True) for contract, count in spam_airdrops(owner).items()]
    contracts: list[dict[str, Any]] = []
    for contract, tokens, spam in listing[offset : offset + size]:
        if spam:
            contracts.append(
                {
                    **_spam_contract(contract),
                    "totalBalance": str(sum(tokens.values())),
                    "numDistinctTokensOwned": str(len(tokens)),
                }
            )
            continue
        collection = COLLECTIONS[contract]
        first = int(next(iter(tokens)))
        slug = collection.name.lower().replace(" ", "-")
        contracts.append(
            {
                **_contract(collection),
                "totalBalance": str(sum(tokens.values())),
                "numDistinctTokensOwned": str(len(tokens)),
                "isSpam": False,
                "displayNft": {"tokenId": str(first), "name": f"{collection.name} #{first}"},
                "image": _image(slug, first),
            }
        )
    return _json(
        200, {"contracts": contracts, "totalCount": len(listing), "pageKey": _next_key(offset, size, len(listing))}
    )


# --------------------------------------------------------------------------------------------------
# Server


class AlchemyStub(StubServer):
    """The stub server: ``with AlchemyStub() as stub: AlchemyClient(api_key=stub.api_key, base_url=stub.base_url)``."""

    name = "alchemy-stub"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        latency_ms: float = 0,
        rate_limit_every: int = 0,
        retry_after_seconds: int = 1,
        server_error_every: int = 0,
        owners_page_size: int = DEFAULT_OWNERS_PAGE_SIZE,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            api_key=api_key,
            latency_ms=latency_ms,
            rate_limit_every=rate_limit_every,
            retry_after_seconds=retry_after_seconds,
            server_error_every=server_error_every,
        )
        self.owners_page_size = owners_page_size
        self._lock = threading.Lock()
        self._sequence = 0
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._peaks: Counter[str] = Counter()
        self._methods: dict[str, Callable[[_Params], _Answer]] = {
            "getContractMetadata": get_contract_metadata,
            "getNFTsForContract": get_nfts_for_contract,
            "getNFTMetadata": get_nft_metadata,
            "getOwnersForNFT": get_owners_for_nft,
            "getOwnersForContract": lambda params: get_owners_for_contract(params, page_size=self.owners_page_size),
            "getNFTsForOwner": get_nfts_for_owner,
            "getContractsForOwner": get_contracts_for_owner,
        }

    def answer(self, path: str, headers: Mapping[str, str]) -> Answer:
        return self.handle(path)

    # -- counters ----------------------------------------------------------------------------------

    def request_count(self, method: str | None = None, *, contract: str | None = None) -> int:
        """Requests received (injected failures included), for one method and/or one contract."""
        wanted = contract.lower() if contract else None
        with self._lock:
            return sum(
                count
                for (name, address), count in self._counts.items()
                if (method is None or name == method) and (wanted is None or address == wanted)
            )

    def request_counts(self) -> dict[str, int]:
        """``{method: requests}`` so far."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (name, _), count in self._counts.items():
                totals[name] += count
        return dict(totals)

    def peak_in_flight(self, method: str) -> int:
        """The most requests of ``method`` that were being answered at the same time."""
        with self._lock:
            return self._peaks[method]

    def reset_counters(self) -> None:
        """Forget every count (and restart the sequence used by the failure injection)."""
        with self._lock:
            self._counts.clear()
            self._peaks.clear()
            self._sequence = 0

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, target: str) -> _Answer:
        """Answer one request target (path and query) as the Alchemy NFT API v3 would."""
        parts = urlsplit(target)
        segments = parts.path.split("/")
        if len(segments) != 5 or segments[:3] != ["", "nft", "v3"] or segments[4] not in self._methods:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        key, method = segments[3], segments[4]
        params = parse_qs(parts.query, keep_blank_values=True)
        contract = _one(params, "contractAddress")
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            self._counts[method, contract.lower() if contract else None] += 1
            self._in_flight[method] += 1
            self._peaks[method] = max(self._peaks[method], self._in_flight[method])
        try:
            return self._answer(method, key, params, sequence)
        finally:
            with self._lock:
                self._in_flight[method] -= 1

    def _answer(self, method: str, key: str, params: _Params, sequence: int) -> _Answer:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if self.server_error_every and sequence % self.server_error_every == 0:
            return 503, b"Service Unavailable: upstream overloaded", {"Content-Type": "text/plain"}
        if self.rate_limit_every and sequence % self.rate_limit_every == 0:
            headers = {"Retry-After": str(self.retry_after_seconds)}
            return _error(429, "Your app has exceeded its compute units per second capacity.", headers)
        if not self.accepts(key):
            return _error(401, f"Must be authenticated! The API key {key} is not valid.")
        try:
            return self._methods[method](params)
        except _BadRequestError as error:
            return _error(400, str(error))


def main() -> None:
    """Run the stub in the foreground until Ctrl-C."""
    stub_main(
        AlchemyStub,
        default_key=DEFAULT_API_KEY,
        upstream="ALCHEMY",
        contents=f"ERC-721 {ERC721_CONTRACT}, ERC-1155 {ERC1155_CONTRACT}, 100k {LARGE_CONTRACT}",
    )


if __name__ == "__main__":
    main()
