"""The Alchemy NFT API v3 client (SPEC §7): one sync httpx client per container, tolerant models, bounded retries.

URLs are ``{ALCHEMY_BASE_URL or https://{network}.g.alchemy.com}/nft/v3/{apiKey}/{method}``. The key
lives only inside the client's transport: the ``httpx.Client`` and every ``httpx.Request`` it creates
carry ``***`` in its place, so httpx's own request log, exception messages and reprs never contain
it; the transport swaps the key in just before the bytes leave. Error details read from Alchemy are
redacted as well, and httpx exceptions are never chained into ours.

What callers can rely on:

- every call is a GET with explicit timeouts (connect 2 s, read 10 s by default);
- 429 waits ``Retry-After`` (seconds or an HTTP date) plus full-jitter backoff; 5xx, timeouts and
  connection errors retry with full-jitter backoff; both are bounded by ``max_attempts`` and by a
  time budget per call (a ``Retry-After`` beyond the budget fails at once, carrying its value);
  any other 4xx fails fast;
- listings stop when the page key is null, repeats, or ``max_pages`` pages were read; the last page
  yielded has ``page_key is None`` exactly when the listing is complete;
- ``iter_nfts_for_id_range`` lists a collection whose token ids are dense integers in parallel: one
  ``startToken`` request per range of ``limit`` ids, at most ``concurrency`` in flight through a
  ``CallGate`` (halved, and the others paused, on each 429), pages yielded in id order;
- responses become small frozen models of the fields we use, normalized: addresses lower-case,
  token ids and quantities decimal strings (``"0x1f"`` → ``"31"``), numbers given as strings parsed,
  ``openSeaMetadata``/``openseaMetadata`` both read, per-token ``raw.error`` kept as ``metadata_error``,
  attribute values as strings. Unknown fields are ignored; items without a usable address or token id
  are skipped (and counted in a warning) rather than failing a whole page.

Retries are ``such_market.upstream.retrying.RetryingRequester``'s; failures raise the tree of
``such_market.upstream.errors``.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from such_market.container import per_container
from such_market.observability import logger
from such_market.upstream.alchemy_settings import DEFAULT_ALCHEMY_NETWORK, AlchemySettings
from such_market.upstream.errors import (
    UpstreamBadRequest,
    UpstreamProtocolError,
)
from such_market.upstream.retrying import JsonUpstream, RetryPolicy
from such_market.validation import normalize_address, token_id_value

if TYPE_CHECKING:
    from such_market.upstream.gate import CallGate

KEY_PLACEHOLDER: Final = "***"
"""What stands for the API key in every URL httpx sees, logs or puts into an exception."""

MAX_PAGE_SIZE: Final = 100
"""Alchemy's largest ``limit``/``pageSize`` for getNFTsForContract, getNFTsForOwner, getContractsForOwner."""

DEFAULT_RANGE_CONCURRENCY: Final = 8
"""getNFTsForContract id ranges in flight at once by default (``iter_nfts_for_id_range``)."""

MAX_OWNER_CONTRACT_FILTERS: Final = 45
"""Alchemy accepts at most 45 ``contractAddresses[]`` in getNFTsForOwner."""

ERC721: Final = "ERC721"
ERC1155: Final = "ERC1155"
NOT_A_CONTRACT_TYPES: Final = frozenset({"NOT_A_CONTRACT", "NO_SUPPORTED_NFT_STANDARD"})
"""``tokenType`` values with which getContractMetadata says "no NFT collection here" (HTTP 200)."""

_NONEXISTENT_TOKEN_ERRORS: Final = ("token does not exist", "nonexistent token", "invalid token id")
"""Substrings of ``raw.error`` with which getNFTMetadata says the token does not exist (HTTP 200)."""

_MAX_DETAIL_CHARS: Final = 300


# --------------------------------------------------------------------------------------------------
# Value parsing (tolerant readers of Alchemy's loosely typed fields)


def normalize_token_id(value: object) -> str:
    """A token id or quantity as a canonical decimal string: decimal strings, ints and ``0x`` hex accepted.

    Surrounding whitespace and integral floats are tolerated; anything else (negative, over 2**256-1,
    fractional, booleans, garbage) raises ``ValueError``.
    """
    if isinstance(value, str):
        value = value.strip()
        if value[:2] == "0X":
            value = "0x" + value[2:]
    elif isinstance(value, float) and value.is_integer() and 0 <= value < 2**53:
        value = int(value)
    return str(token_id_value(value))


def _uint_or_none(value: object) -> str | None:
    try:
        return normalize_token_id(value)
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    parsed = _uint_or_none(value)
    return int(parsed) if parsed is not None else None


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return " ".join(value)  # v2 sometimes gave descriptions as lists of paragraphs
    return None


def _first_text(*values: object) -> str | None:
    for value in values:
        text = _text(value)
        if text is not None:
            return text
    return None


def _bool_or_none(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _token_type(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().upper().replace("-", "")


def _attribute_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


def _address_or_none(value: object) -> str | None:
    try:
        return normalize_address(value)
    except ValueError:
        return None


Address = Annotated[str, BeforeValidator(normalize_address)]
TokenId = Annotated[str, BeforeValidator(normalize_token_id)]


# --------------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Attribute(_Model):
    """One trait of a token: ``trait_type`` and ``value`` as strings (numbers and booleans converted)."""

    trait_type: str
    value: str
    display_type: str | None = None


def parse_attributes(metadata: object) -> tuple[Attribute, ...]:
    """The traits of a token from its ``raw.metadata`` (never raises).

    Reads ``attributes`` (or ``traits``): a list of ``{trait_type, value}`` objects (``traitType``
    accepted too), or a plain ``{type: value}`` object. Items without a type or with a value that is
    not a scalar are skipped.
    """
    source = _mapping(metadata)
    raw = source.get("attributes", source.get("traits"))
    pairs: list[tuple[object, object, object]] = []
    if isinstance(raw, Mapping):
        pairs = [(key, value, None) for key, value in raw.items()]
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                pairs.append(
                    (item.get("trait_type", item.get("traitType")), item.get("value"), item.get("display_type"))
                )
    attributes: list[Attribute] = []
    for trait_type, value, display_type in pairs:
        if not isinstance(trait_type, str) or not trait_type.strip():
            continue
        text = _attribute_value(value)
        if text is None:
            continue
        attributes.append(
            Attribute(
                trait_type=trait_type.strip(),
                value=text,
                display_type=display_type if isinstance(display_type, str) else None,
            )
        )
    return tuple(attributes)


class OpenSeaMetadata(_Model):
    """The collection's OpenSea data as Alchemy relays it (every field optional)."""

    floor_price: float | None = None
    collection_name: str | None = None
    collection_slug: str | None = None
    safelist_request_status: str | None = None
    image_url: str | None = None
    banner_image_url: str | None = None
    description: str | None = None
    external_url: str | None = None
    twitter_username: str | None = None
    discord_url: str | None = None

    @classmethod
    def from_alchemy(cls, payload: object) -> OpenSeaMetadata | None:
        """Read ``openSeaMetadata``/``openseaMetadata``; ``None`` when absent or empty."""
        raw = _mapping(payload)
        if not raw:
            return None
        return cls(
            floor_price=_float_or_none(raw.get("floorPrice")),
            collection_name=_text(raw.get("collectionName")),
            collection_slug=_text(raw.get("collectionSlug")),
            safelist_request_status=_text(raw.get("safelistRequestStatus")),
            image_url=_text(raw.get("imageUrl")),
            banner_image_url=_text(raw.get("bannerImageUrl")),
            description=_text(raw.get("description")),
            external_url=_text(raw.get("externalUrl")),
            twitter_username=_text(raw.get("twitterUsername")),
            discord_url=_text(raw.get("discordUrl")),
        )


def _opensea(raw: Mapping[str, Any]) -> OpenSeaMetadata | None:
    for spelling in ("openSeaMetadata", "openseaMetadata", "openSea", "opensea"):
        if spelling in raw:
            return OpenSeaMetadata.from_alchemy(raw[spelling])
    return None


class ContractMetadata(_Model):
    """A collection's contract as getContractMetadata describes it."""

    address: Address
    token_type: str
    name: str | None = None
    symbol: str | None = None
    total_supply: str | None = None
    contract_deployer: str | None = None
    deployed_block_number: int | None = None
    is_spam: bool | None = None
    opensea: OpenSeaMetadata | None = None

    @classmethod
    def from_alchemy(cls, payload: object, *, address: str | None = None) -> ContractMetadata:
        """Parse a contract object; ``address`` is used when the payload has none. Raises ``ValueError``."""
        raw = _mapping(payload)
        return cls(
            address=raw.get("address") or raw.get("contractAddress") or address,
            token_type=_token_type(raw.get("tokenType")) or "UNKNOWN",
            name=_text(raw.get("name")),
            symbol=_text(raw.get("symbol")),
            total_supply=_uint_or_none(raw.get("totalSupply")),
            contract_deployer=_address_or_none(raw.get("contractDeployer")),
            deployed_block_number=_int_or_none(raw.get("deployedBlockNumber")),
            is_spam=_bool_or_none(raw.get("isSpam")),
            opensea=_opensea(raw),
        )


class Nft(_Model):
    """One token with the metadata we serve. ``metadata_error`` is Alchemy's per-token ``raw.error``.

    ``metadata`` is the token's raw metadata object (``{}`` when absent or broken); ``balance`` is set
    only by getNFTsForOwner (the wallet's balance of this token).
    """

    contract_address: Address
    token_id: TokenId
    token_type: str | None = None
    title: str | None = None
    description: str | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None
    original_image_url: str | None = None
    token_uri: str | None = None
    attributes: tuple[Attribute, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)
    metadata_error: str | None = None
    balance: str | None = None
    time_last_updated: str | None = None

    @classmethod
    def from_alchemy(cls, payload: object, *, contract_address: str | None = None) -> Nft:
        """Parse an NFT object (v3; v2's ``id.tokenId``/``title``/``error`` too). Raises ``ValueError``."""
        raw = _mapping(payload)
        contract = _mapping(raw.get("contract"))
        data = _mapping(raw.get("raw"))
        metadata_source = data.get("metadata", raw.get("metadata"))
        metadata = dict(metadata_source) if isinstance(metadata_source, Mapping) else {}
        image = _mapping(raw.get("image"))
        error = data.get("error", raw.get("error"))
        token_id = raw.get("tokenId", _mapping(raw.get("id")).get("tokenId"))
        token_uri = raw.get("tokenUri", data.get("tokenUri"))
        original = _first_text(image.get("originalUrl"), metadata.get("image"), metadata.get("image_url"))
        return cls(
            contract_address=contract.get("address") or raw.get("contractAddress") or contract_address,
            token_id=token_id,
            token_type=_token_type(raw.get("tokenType")) or _token_type(contract.get("tokenType")),
            title=_first_text(raw.get("name"), raw.get("title"), metadata.get("name")),
            description=_first_text(raw.get("description"), metadata.get("description")),
            image_url=_first_text(image.get("cachedUrl"), image.get("pngUrl"), original),
            thumbnail_url=_text(image.get("thumbnailUrl")),
            original_image_url=original,
            token_uri=_first_text(token_uri, _mapping(token_uri).get("raw")),
            attributes=parse_attributes(metadata),
            metadata=metadata,
            metadata_error=None if error is None or error == "" else str(error)[:_MAX_DETAIL_CHARS],
            balance=_uint_or_none(raw.get("balance")),
            time_last_updated=_text(raw.get("timeLastUpdated")),
        )


class OwnerBalance(_Model):
    """A holder of one token and how many units it holds (``None``: Alchemy did not say, see get_owners_for_nft)."""

    address: Address
    balance: str | None


class TokenBalance(_Model):
    """How many units of ``token_id`` a holder has."""

    token_id: TokenId
    balance: str


class ContractOwner(_Model):
    """A holder of a collection and its balances per token (empty when balances were not requested)."""

    address: Address
    token_balances: tuple[TokenBalance, ...] = ()

    @classmethod
    def from_alchemy(cls, payload: object) -> ContractOwner:
        """Parse an owner: an address string, or ``{ownerAddress, tokenBalances:[{tokenId, balance}]}``."""
        if isinstance(payload, str):
            return cls(address=payload)
        raw = _mapping(payload)
        balances: list[TokenBalance] = []
        items = raw.get("tokenBalances")
        for item in items if isinstance(items, list) else []:
            entry = _mapping(item)
            token_id = _uint_or_none(entry.get("tokenId"))
            balance = _uint_or_none(entry.get("balance"))
            if token_id is not None and balance is not None:
                balances.append(TokenBalance(token_id=token_id, balance=balance))
        return cls(address=raw.get("ownerAddress", raw.get("address")), token_balances=tuple(balances))


class OwnerContract(_Model):
    """A collection a wallet holds, as getContractsForOwner describes it."""

    address: Address
    token_type: str | None = None
    name: str | None = None
    symbol: str | None = None
    total_supply: str | None = None
    total_balance: int | None = None
    num_distinct_tokens_owned: int | None = None
    is_spam: bool | None = None
    image_url: str | None = None
    opensea: OpenSeaMetadata | None = None

    @classmethod
    def from_alchemy(cls, payload: object) -> OwnerContract:
        """Parse one entry of ``contracts``. Raises ``ValueError`` without a valid address."""
        raw = _mapping(payload)
        image = _mapping(raw.get("image"))
        opensea = _opensea(raw)
        return cls(
            address=raw.get("address"),
            token_type=_token_type(raw.get("tokenType")),
            name=_first_text(raw.get("name"), opensea.collection_name if opensea else None),
            symbol=_text(raw.get("symbol")),
            total_supply=_uint_or_none(raw.get("totalSupply")),
            total_balance=_int_or_none(raw.get("totalBalance")),
            num_distinct_tokens_owned=_int_or_none(raw.get("numDistinctTokensOwned")),
            is_spam=_bool_or_none(raw.get("isSpam")),
            image_url=_first_text(image.get("cachedUrl"), image.get("originalUrl"), opensea and opensea.image_url),
            opensea=opensea,
        )


class _Page(Protocol):
    @property
    def page_key(self) -> str | None: ...


class NftPage(_Model):
    """One page of getNFTsForContract; ``page_key`` is the next ``startToken`` (``None`` on the last page)."""

    nfts: tuple[Nft, ...]
    page_key: str | None = None


class OwnedNftPage(_Model):
    """One page of getNFTsForOwner (each ``Nft`` carries the wallet's ``balance``)."""

    nfts: tuple[Nft, ...]
    page_key: str | None = None
    total_count: int | None = None


class ContractOwnersPage(_Model):
    """One page of getOwnersForContract."""

    owners: tuple[ContractOwner, ...]
    page_key: str | None = None


class OwnerContractsPage(_Model):
    """One page of getContractsForOwner."""

    contracts: tuple[OwnerContract, ...]
    page_key: str | None = None
    total_count: int | None = None


class _OwnerAddressesPage(_Model):
    owners: tuple[str, ...]
    page_key: str | None = None


def _page_key(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def page_key_token_id(page_key: str | None) -> int | None:
    """The token id a getNFTsForContract ``pageKey`` points at (it is the next ``startToken``: hex or
    decimal), or ``None`` when it is absent or opaque."""
    if page_key is None:
        return None
    try:
        return int(normalize_token_id(page_key))
    except ValueError:
        return None


def _parse_items[T](items: object, parse: Callable[[object], T], *, method: str) -> tuple[T, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise UpstreamProtocolError(method, "the list in the response is not a JSON array")
    parsed: list[T] = []
    for item in items:
        try:
            parsed.append(parse(item))
        except ValueError:
            continue
    skipped = len(items) - len(parsed)
    if skipped:
        logger.warning("skipped malformed upstream items", extra={"method": method, "skipped": skipped})
    return tuple(parsed)


# --------------------------------------------------------------------------------------------------
# Transport


class _KeyTransport(httpx.BaseTransport):
    """Puts the API key into the path at the last moment, so nothing above the wire ever holds it."""

    def __init__(self, inner: httpx.BaseTransport, api_key: str) -> None:
        self._inner = inner
        self._marker = f"/{KEY_PLACEHOLDER}/".encode()
        self._segment = f"/{quote(api_key, safe='')}/".encode()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        real_url = request.url.copy_with(raw_path=request.url.raw_path.replace(self._marker, self._segment, 1))
        outgoing = httpx.Request(
            request.method,
            real_url,
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(outgoing)

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return f"<_KeyTransport {type(self._inner).__name__}>"


# --------------------------------------------------------------------------------------------------
# Client


class AlchemyClient(JsonUpstream):
    """A sync client of the Alchemy NFT API v3. Thread-safe (one ``httpx.Client``); create once per container.

    ``transport``, ``sleep``, ``clock`` (monotonic seconds), ``now`` (wall clock, for HTTP-date
    ``Retry-After``) and ``jitter`` (a uniform number in [0, 1)) are seams for tests.
    """

    def __init__(
        self,
        *,
        api_key: str,
        network: str = DEFAULT_ALCHEMY_NETWORK,
        base_url: str | None = None,
        max_attempts: int = 4,
        retry_budget_seconds: float = 20.0,
        max_pages: int = 2000,
        connect_timeout_seconds: float = 2.0,
        read_timeout_seconds: float = 10.0,
        backoff_base_seconds: float = 0.25,
        backoff_cap_seconds: float = 4.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("api_key is empty")
        if max_attempts < 1 or max_pages < 1:
            raise ValueError("max_attempts and max_pages must be at least 1")
        self._api_key = api_key.strip()
        self.origin = (base_url or f"https://{network}.g.alchemy.com").rstrip("/")
        self.max_attempts = max_attempts
        self.retry_budget_seconds = retry_budget_seconds
        self.max_pages = max_pages
        super().__init__(
            upstream="Alchemy",
            base_url=f"{self.origin}/nft/v3/{KEY_PLACEHOLDER}/",
            transport=_KeyTransport(transport or httpx.HTTPTransport(), self._api_key),
            secrets=[self._api_key],
            policy=RetryPolicy(max_attempts, retry_budget_seconds, backoff_base_seconds, backoff_cap_seconds),
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            sleep=sleep,
            clock=clock,
            now=now,
            jitter=jitter,
        )

    @classmethod
    def from_settings(cls, settings: AlchemySettings, *, transport: httpx.BaseTransport | None = None) -> Self:
        """A client configured from ``settings`` (resolves the key, from Secrets Manager/SSM if need be)."""
        return cls(
            api_key=settings.resolve_api_key(),
            network=settings.alchemy_network,
            base_url=settings.alchemy_base_url,
            max_attempts=settings.alchemy_max_attempts,
            retry_budget_seconds=settings.alchemy_retry_budget_seconds,
            max_pages=settings.alchemy_max_pages,
            connect_timeout_seconds=settings.alchemy_connect_timeout_seconds,
            read_timeout_seconds=settings.alchemy_read_timeout_seconds,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"AlchemyClient(origin={self.origin!r}, max_attempts={self.max_attempts}, max_pages={self.max_pages})"

    # -- methods ------------------------------------------------------------------------------------

    def get_contract_metadata(self, *, contract: str) -> ContractMetadata | None:
        """The collection's metadata, or ``None`` when the address holds no NFT contract.

        Alchemy says so with HTTP 200 and ``tokenType`` ``NOT_A_CONTRACT``/``NO_SUPPORTED_NFT_STANDARD``;
        some networks answer 400 or 404 instead, which mean the same here (the address was validated
        before the call, so the request itself cannot be malformed).
        """
        address = normalize_address(contract)
        try:
            payload = self._call("getContractMetadata", [("contractAddress", address)])
        except UpstreamBadRequest as error:
            if error.status in {400, 404}:
                return None
            raise
        metadata = self._parse_one(
            "getContractMetadata", lambda: ContractMetadata.from_alchemy(payload, address=address)
        )
        return None if metadata.token_type in NOT_A_CONTRACT_TYPES else metadata

    def get_nfts_for_contract_page(
        self,
        *,
        contract: str,
        start_token: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        with_metadata: bool = True,
        gate: CallGate | None = None,
    ) -> NftPage:
        """One page of the collection's tokens from ``start_token`` (a previous ``page_key``, or any token id
        in hex) on; ``gate`` is the shared concurrency gate of a parallel listing."""
        address = normalize_address(contract)
        params = [
            ("contractAddress", address),
            ("withMetadata", _flag(with_metadata)),
            ("limit", str(_page_size(limit))),
        ]
        if start_token is not None:
            params.append(("startToken", start_token))
        payload = self._call("getNFTsForContract", params, gate=gate)
        nfts = _parse_items(
            payload.get("nfts"),
            lambda item: Nft.from_alchemy(item, contract_address=address),
            method="getNFTsForContract",
        )
        return NftPage(nfts=nfts, page_key=_page_key(payload.get("pageKey")))

    def iter_nfts_for_contract(
        self,
        *,
        contract: str,
        start_token: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        with_metadata: bool = True,
        max_pages: int | None = None,
    ) -> Iterator[NftPage]:
        """Every page of the collection's tokens (see the module docstring for when paging stops)."""
        return self._paginate(
            "getNFTsForContract",
            lambda key: self.get_nfts_for_contract_page(
                contract=contract, start_token=key, limit=limit, with_metadata=with_metadata
            ),
            first_key=start_token,
            max_pages=max_pages,
        )

    def iter_nfts_for_id_range(
        self,
        *,
        contract: str,
        start: int,
        end: int,
        limit: int = MAX_PAGE_SIZE,
        concurrency: int = DEFAULT_RANGE_CONCURRENCY,
        with_metadata: bool = True,
        max_pages: int | None = None,
        gate: CallGate | None = None,
    ) -> Iterator[NftPage]:
        """The collection's tokens from id ``start`` on, read in parallel ranges of ``limit`` ids up to ``end``.

        For a collection whose ids are dense integers (the caller judges that): each range [s, s+limit)
        below ``end`` is one getNFTsForContract call with ``startToken`` s, at most ``concurrency`` in flight
        through ``gate`` (a new ``CallGate`` unless given), and the pages are yielded in id order, each
        carrying the next range's start as ``page_key`` (a ``startToken`` to resume from). A page holds only
        its range's tokens: where ids have gaps, Alchemy's page runs into the next range, whose own call
        lists those; where it ends inside its range with a page key, the range goes on from that key. The
        last range follows Alchemy's page keys to the end of the listing like ``iter_nfts_for_contract``,
        so ids beyond ``end`` (a supply that undercounts) are listed too, and its last page has
        ``page_key is None`` exactly when the listing is complete. With dense ids this is one call per page.
        """
        if limit < 1 or concurrency < 1 or end < start:
            raise ValueError("limit and concurrency must be at least 1, and end not below start")
        gate = gate or self._requester.gate(concurrency)
        cap = max_pages or self.max_pages
        starts = range(start, min(max(end, start + 1), start + cap * limit), limit)  # the page cap holds here too
        last = starts[-1]
        window = 2 * concurrency  # ranges fetched ahead of the consumer: bounds memory, keeps the gate busy
        pending: deque[Future[NftPage]] = deque()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="alchemy-range")

        def submit(first: int) -> None:
            bound = None if first == last else first + limit
            task = contextvars.copy_context().run  # the invocation's deadline goes with the call
            pending.append(
                pool.submit(
                    task,
                    self._id_range_page,
                    contract=contract,
                    first=first,
                    bound=bound,
                    limit=limit,
                    with_metadata=with_metadata,
                    gate=gate,
                )
            )

        try:
            upcoming = iter(starts)
            for first in itertools.islice(upcoming, window):
                submit(first)
            while pending:
                page = pending.popleft().result()
                if (following := next(upcoming, None)) is not None:
                    submit(following)
                yield page
                if not pending and page.page_key is not None and cap > len(starts):
                    # the last range: go on along Alchemy's page keys, within the page cap
                    yield from self.iter_nfts_for_contract(
                        contract=contract,
                        start_token=page.page_key,
                        limit=limit,
                        with_metadata=with_metadata,
                        max_pages=cap - len(starts),
                    )
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _id_range_page(
        self, *, contract: str, first: int, bound: int | None, limit: int, with_metadata: bool, gate: CallGate
    ) -> NftPage:
        """The tokens with ids in [first, bound) as one page whose ``page_key`` is ``bound``; without a
        bound (the last range), Alchemy's first page from ``first`` as it is."""
        nfts: list[Nft] = []
        key = first
        while True:
            page = self.get_nfts_for_contract_page(
                contract=contract, start_token=hex(key), limit=limit, with_metadata=with_metadata, gate=gate
            )
            if bound is None:
                return page
            nfts.extend(nft for nft in page.nfts if int(nft.token_id) < bound)
            following = page_key_token_id(page.page_key)
            if following is None or following >= bound or following <= key:
                return NftPage(nfts=tuple(nfts), page_key=hex(bound))
            key = following

    def get_nft_metadata(self, *, contract: str, token_id: str | int, refresh_cache: bool = False) -> Nft | None:
        """One token, or ``None`` when Alchemy says it does not exist.

        Alchemy answers an unknown token with HTTP 200 and ``raw.error`` "Token does not exist" (and
        on some networks with 400/404); every other ``raw.error`` is kept as ``metadata_error``.
        """
        address = normalize_address(contract)
        token = normalize_token_id(token_id)
        params = [("contractAddress", address), ("tokenId", token), ("refreshCache", _flag(refresh_cache))]
        try:
            payload = self._call("getNFTMetadata", params)
        except UpstreamBadRequest as error:
            if error.status in {400, 404}:
                return None
            raise
        nft = self._parse_one("getNFTMetadata", lambda: Nft.from_alchemy(payload, contract_address=address))
        error_text = (nft.metadata_error or "").lower()
        if any(marker in error_text for marker in _NONEXISTENT_TOKEN_ERRORS):
            return None
        return nft

    def get_owners_for_nft(
        self, *, contract: str, token_id: str | int, token_type: str | None = None, balance_lookup_limit: int = 20
    ) -> list[OwnerBalance]:
        """The holders of one token with their balances, as far as they can be known.

        getOwnersForNFT returns addresses only. For an ERC-721 every balance is ``"1"``. For an
        ERC-1155 (or a collection whose type is not known), each of the first ``balance_lookup_limit``
        holders costs one getNFTsForOwner call filtered to this contract to read its balance; holders
        beyond that limit, or whose balance Alchemy does not report, get ``balance=None``. Pass
        ``token_type`` when it is known; otherwise it is read with getContractMetadata (one more call).
        """
        address = normalize_address(contract)
        token = normalize_token_id(token_id)
        holders: dict[str, None] = {}
        for page in self._paginate(
            "getOwnersForNFT", lambda key: self._owners_for_nft_page(address, token, key), first_key=None
        ):
            holders.update(dict.fromkeys(page.owners))
        if not holders:
            return []
        kind = _token_type(token_type)
        if kind is None:
            metadata = self.get_contract_metadata(contract=address)
            kind = metadata.token_type if metadata else None
        if kind == ERC721:
            return [OwnerBalance(address=holder, balance="1") for holder in holders]
        owners: list[OwnerBalance] = []
        for index, holder in enumerate(holders):
            balance = self._balance_of(holder, address, token) if index < balance_lookup_limit else None
            owners.append(OwnerBalance(address=holder, balance=balance))
        return owners

    def get_owners_for_contract_page(
        self, *, contract: str, with_token_balances: bool = True, page_key: str | None = None
    ) -> ContractOwnersPage:
        """One page of the collection's holders (with ``tokenBalances`` when asked)."""
        address = normalize_address(contract)
        params = [("contractAddress", address), ("withTokenBalances", _flag(with_token_balances))]
        if page_key is not None:
            params.append(("pageKey", page_key))
        payload = self._call("getOwnersForContract", params)
        owners = _parse_items(payload.get("owners"), ContractOwner.from_alchemy, method="getOwnersForContract")
        return ContractOwnersPage(owners=owners, page_key=_page_key(payload.get("pageKey")))

    def get_owners_for_contract(
        self, *, contract: str, with_token_balances: bool = True, max_pages: int | None = None
    ) -> Iterator[ContractOwnersPage]:
        """Every page of the collection's holders."""
        return self._paginate(
            "getOwnersForContract",
            lambda key: self.get_owners_for_contract_page(
                contract=contract, with_token_balances=with_token_balances, page_key=key
            ),
            first_key=None,
            max_pages=max_pages,
        )

    def get_nfts_for_owner_page(
        self,
        *,
        owner: str,
        contract_addresses: Sequence[str] | None = None,
        page_key: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        with_metadata: bool = True,
    ) -> OwnedNftPage:
        """One page of the wallet's tokens, optionally only in the given collections (at most 45)."""
        wallet = normalize_address(owner)
        params = [("owner", wallet), ("withMetadata", _flag(with_metadata)), ("pageSize", str(_page_size(page_size)))]
        contracts = [normalize_address(address) for address in contract_addresses or ()]
        if len(contracts) > MAX_OWNER_CONTRACT_FILTERS:
            raise ValueError(f"at most {MAX_OWNER_CONTRACT_FILTERS} contract addresses per call")
        params.extend(("contractAddresses[]", address) for address in contracts)
        if page_key is not None:
            params.append(("pageKey", page_key))
        payload = self._call("getNFTsForOwner", params)
        nfts = _parse_items(payload.get("ownedNfts"), Nft.from_alchemy, method="getNFTsForOwner")
        return OwnedNftPage(
            nfts=nfts, page_key=_page_key(payload.get("pageKey")), total_count=_int_or_none(payload.get("totalCount"))
        )

    def get_nfts_for_owner(
        self,
        *,
        owner: str,
        contract_addresses: Sequence[str] | None = None,
        with_metadata: bool = True,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int | None = None,
    ) -> Iterator[OwnedNftPage]:
        """Every page of the wallet's tokens."""
        return self._paginate(
            "getNFTsForOwner",
            lambda key: self.get_nfts_for_owner_page(
                owner=owner,
                contract_addresses=contract_addresses,
                page_key=key,
                page_size=page_size,
                with_metadata=with_metadata,
            ),
            first_key=None,
            max_pages=max_pages,
        )

    def get_contracts_for_owner_page(
        self, *, owner: str, page_key: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> OwnerContractsPage:
        """One page of the collections the wallet holds (spam included, flagged by ``is_spam``)."""
        wallet = normalize_address(owner)
        params = [("owner", wallet), ("pageSize", str(_page_size(page_size))), ("withMetadata", "true")]
        if page_key is not None:
            params.append(("pageKey", page_key))
        payload = self._call("getContractsForOwner", params)
        contracts = _parse_items(payload.get("contracts"), OwnerContract.from_alchemy, method="getContractsForOwner")
        return OwnerContractsPage(
            contracts=contracts,
            page_key=_page_key(payload.get("pageKey")),
            total_count=_int_or_none(payload.get("totalCount")),
        )

    def get_contracts_for_owner(
        self, *, owner: str, page_size: int = MAX_PAGE_SIZE, max_pages: int | None = None
    ) -> Iterator[OwnerContractsPage]:
        """Every page of the collections the wallet holds."""
        return self._paginate(
            "getContractsForOwner",
            lambda key: self.get_contracts_for_owner_page(owner=owner, page_key=key, page_size=page_size),
            first_key=None,
            max_pages=max_pages,
        )

    # -- internals ----------------------------------------------------------------------------------

    def _owners_for_nft_page(self, contract: str, token_id: str, page_key: str | None) -> _OwnerAddressesPage:
        params = [("contractAddress", contract), ("tokenId", token_id)]
        if page_key is not None:
            params.append(("pageKey", page_key))
        payload = self._call("getOwnersForNFT", params)
        owners = _parse_items(payload.get("owners"), normalize_address, method="getOwnersForNFT")
        return _OwnerAddressesPage(owners=owners, page_key=_page_key(payload.get("pageKey")))

    def _balance_of(self, owner: str, contract: str, token_id: str) -> str | None:
        for page in self.get_nfts_for_owner(owner=owner, contract_addresses=[contract], with_metadata=False):
            for nft in page.nfts:
                if nft.token_id == token_id and nft.contract_address == contract:
                    return nft.balance
        return None

    def _paginate[P: _Page](
        self, method: str, fetch: Callable[[str | None], P], *, first_key: str | None, max_pages: int | None = None
    ) -> Iterator[P]:
        cap = max_pages or self.max_pages
        seen: set[str] = set() if first_key is None else {first_key}
        key = first_key
        for _ in range(cap):
            page = fetch(key)
            yield page
            key = page.page_key
            if key is None:
                return
            if key in seen:
                logger.warning("upstream repeated a page key; stopping", extra={"method": method})
                return
            seen.add(key)
        logger.warning("upstream listing reached the page cap; stopping", extra={"method": method, "max_pages": cap})

    def _parse_one[T](self, method: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except ValueError:
            raise UpstreamProtocolError(method, "the response does not describe the requested item") from None

    def _call(self, method: str, params: Sequence[tuple[str, str]], *, gate: CallGate | None = None) -> dict[str, Any]:
        """GET ``method`` with bounded, jittered retries; the decoded JSON object or an ``UpstreamError``."""
        return self._requester.get(method, params, gate=gate)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _page_size(value: int) -> int:
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
    return value


# --------------------------------------------------------------------------------------------------
# The container's client


@per_container(close=AlchemyClient.close)
def get_alchemy_client(settings: AlchemySettings) -> AlchemyClient:
    """The container's client for ``settings`` (created, and the key resolved, on first use)."""
    return AlchemyClient.from_settings(settings)
