"""The Neynar API v2 client (SPEC §7): Farcaster users by fid, one sync httpx client per container.

``GET {NEYNAR_BASE_URL}/v2/farcaster/user/bulk/?fids=1,2,3`` with the key in the ``x-api-key`` header,
and ``GET {NEYNAR_HUB_URL}/v1/onChainSignersByFid?fid=N`` (Neynar's hub HTTP API, same key) for the app
keys of a fid, as ``@farcaster/miniapp-node``'s ``verifyAppKeyWithNeynar`` asks it.
The key lives only inside the client's transport: the ``httpx.Client``, every ``httpx.Request`` it
creates and every response's ``request`` are without it (the transport adds the header to the copy that
goes on the wire), so httpx's logs, exception messages and reprs never contain it. Error details read
from Neynar are redacted as well, and httpx exceptions are never chained into ours.

What callers can rely on:

- ``get_users(fids=…)`` asks for at most ``MAX_FIDS_PER_CALL`` (100) fids per request and batches
  beyond; fids are de-duplicated; a fid Neynar does not know is simply absent from the result;
- explicit timeouts (connect 2 s, read 5 s by default); 429 honours ``Retry-After`` with jittered,
  bounded backoff, and 5xx/timeouts retry, exactly as for Alchemy (``such_market.upstream.retrying``);
  failures raise the ``UpstreamError`` tree of ``such_market.upstream.alchemy`` with ``upstream="Neynar"``;
- ``app_key_fid(fid=…, key=…)`` is the fid of the app that registered ``key`` as an active signer of
  ``fid`` (the ``requestFid`` of the signer's ``SignedKeyRequest`` metadata, ABI-decoded), or ``None``
  when ``key`` is not among the fid's active on-chain signers — the answer of ``verifyAppKeyWithNeynar``;
- users become small frozen ``NeynarUser`` dataclasses, read tolerantly: unknown fields ignored, numbers
  given as strings parsed, negative or absurd counts dropped, addresses lower-cased, invalid or
  duplicate verified addresses dropped, ``verifications`` (older shape) read when
  ``verified_addresses.eth_addresses`` is absent, ``pfp.url`` when ``pfp_url`` is. A user without a
  usable fid is skipped (and counted in a warning) rather than failing the batch.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Self

import httpx

from such_market.container import per_container
from such_market.observability import logger
from such_market.upstream.errors import UpstreamProtocolError
from such_market.upstream.neynar_settings import DEFAULT_NEYNAR_BASE_URL, DEFAULT_NEYNAR_HUB_URL, NeynarSettings
from such_market.upstream.retrying import JsonUpstream, RetryPolicy
from such_market.validation import MAX_FID, normalize_address

UPSTREAM: Final = "Neynar"
MAX_FIDS_PER_CALL: Final = 100
"""Neynar's limit of fids per ``user/bulk`` request."""

API_KEY_HEADER: Final = "x-api-key"
MAX_COUNT: Final = 2**31 - 1
"""Follower/following counts beyond this (``fc_users`` stores ``integer``) are not believed."""

_BULK_METHOD: Final = "user/bulk"
_BULK_PATH: Final = "user/bulk/"
_SIGNERS_METHOD: Final = "onChainSignersByFid"
_SIGNERS_PATH: Final = "/v1/onChainSignersByFid"
_APP_KEY = re.compile(r"0x[0-9a-f]{64}")
_WORD: Final = 32
_MAX_TEXT: Final = 2048


# --------------------------------------------------------------------------------------------------
# Tolerant readers


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:_MAX_TEXT] if text else None


def _count(value: object, *, maximum: int) -> int | None:
    """A non-negative integer up to ``maximum`` from an int, an integral float or a decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= maximum:
        return value
    return None


def _address(value: object) -> str | None:
    try:
        return normalize_address(value.strip() if isinstance(value, str) else value)
    except ValueError:
        return None


def _addresses(values: object) -> tuple[str, ...]:
    """Valid addresses, lower-cased, de-duplicated in order; anything else is dropped."""
    found: dict[str, None] = {}
    for value in values if isinstance(values, list) else []:
        address = _address(value)
        if address is not None:
            found[address] = None
    return tuple(found)


# --------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True, slots=True, kw_only=True)
class NeynarUser:
    """A Farcaster user as we keep it (``fc_users``): addresses lower-case, counts non-negative. A plain
    dataclass, as ``from_neynar`` does the reading: the profile and webhook routes learn users on their cold
    path, where pydantic would cost more than the parse."""

    fid: int
    username: str | None = None
    display_name: str | None = None
    pfp_url: str | None = None
    custody_address: str | None = None
    verified_eth_addresses: tuple[str, ...] = ()
    follower_count: int | None = None
    following_count: int | None = None

    @classmethod
    def from_neynar(cls, payload: object) -> NeynarUser:
        """Parse one entry of ``users``. Raises ``ValueError`` without a usable fid."""
        raw = _mapping(payload)
        fid = _count(raw.get("fid"), maximum=MAX_FID)
        if not fid:
            raise ValueError("a user needs a positive fid")
        verified = _mapping(raw.get("verified_addresses"))
        eth = verified.get("eth_addresses") if "eth_addresses" in verified else raw.get("verifications")
        return cls(
            fid=fid,
            username=_text(raw.get("username")),
            display_name=_text(raw.get("display_name", raw.get("displayName"))),
            pfp_url=_text(raw.get("pfp_url")) or _text(_mapping(raw.get("pfp")).get("url")),
            custody_address=_address(raw.get("custody_address", raw.get("custodyAddress"))),
            verified_eth_addresses=_addresses(eth),
            follower_count=_count(raw.get("follower_count", raw.get("followerCount")), maximum=MAX_COUNT),
            following_count=_count(raw.get("following_count", raw.get("followingCount")), maximum=MAX_COUNT),
        )


def parse_users(payload: Mapping[str, Any]) -> tuple[NeynarUser, ...]:
    """The users of a ``user/bulk`` response; malformed entries are skipped and counted in a warning."""
    items = payload.get("users")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise UpstreamProtocolError(_BULK_METHOD, "users is not a JSON array", upstream=UPSTREAM)
    users: list[NeynarUser] = []
    for item in items:
        try:
            users.append(NeynarUser.from_neynar(item))
        except ValueError:
            continue
    skipped = len(items) - len(users)
    if skipped:
        logger.warning("skipped malformed upstream items", extra={"method": _BULK_METHOD, "skipped": skipped})
    return tuple(users)


def request_fid(metadata: str) -> int:
    """The ``requestFid`` of a signer's metadata: the base64 ABI encoding of one
    ``SignedKeyRequest(uint256 requestFid, address requestSigner, bytes signature, uint256 deadline)``
    tuple (dynamic, so the first word is the offset of the tuple). ``ValueError`` when it is not that."""
    try:
        raw = base64.b64decode(metadata, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signer metadata is not base64") from None
    if len(raw) < _WORD * 5:
        raise ValueError("the signer metadata is too short for a SignedKeyRequest")
    offset = int.from_bytes(raw[:_WORD])
    if offset % _WORD or offset + _WORD * 4 > len(raw):
        raise ValueError("the signer metadata's tuple offset is out of range")
    fid = int.from_bytes(raw[offset : offset + _WORD])
    if not 0 < fid <= MAX_FID:
        raise ValueError("the signer metadata's requestFid is not a fid")
    return fid


def find_app_fid(payload: Mapping[str, Any], key: str) -> int | None:
    """In an ``onChainSignersByFid`` answer, the app fid of the signer ``key`` (0x + 64 hex digits, any
    case), or ``None`` when it is not listed."""
    events = payload.get("events")
    if not isinstance(events, list):
        raise UpstreamProtocolError(_SIGNERS_METHOD, "events is not a JSON array", upstream=UPSTREAM)
    wanted = key.lower()
    for event in events:
        body = _mapping(_mapping(event).get("signerEventBody"))
        listed, metadata = body.get("key"), body.get("metadata")
        if not isinstance(listed, str) or listed.lower() != wanted:
            continue
        if not isinstance(metadata, str):
            raise UpstreamProtocolError(_SIGNERS_METHOD, "a signer has no metadata", upstream=UPSTREAM)
        try:
            return request_fid(metadata)
        except ValueError as error:
            raise UpstreamProtocolError(_SIGNERS_METHOD, str(error), upstream=UPSTREAM) from None
    return None


# --------------------------------------------------------------------------------------------------
# Transport


class _ApiKeyTransport(httpx.BaseTransport):
    """Adds the key header to the copy of each request that goes on the wire, and to nothing else."""

    def __init__(self, inner: httpx.BaseTransport, api_key: str) -> None:
        self._inner = inner
        self._header = (API_KEY_HEADER.encode(), api_key.encode())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=[*request.headers.raw, self._header],
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(outgoing)

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return f"<_ApiKeyTransport {type(self._inner).__name__}>"


# --------------------------------------------------------------------------------------------------
# Client


class NeynarClient(JsonUpstream):
    """A sync client of the Neynar API v2. Thread-safe (one ``httpx.Client``); create once per container.

    ``transport``, ``sleep``, ``clock`` (monotonic seconds), ``now`` (wall clock) and ``jitter``
    (uniform in [0, 1)) are seams for tests.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_NEYNAR_BASE_URL,
        hub_url: str = DEFAULT_NEYNAR_HUB_URL,
        max_attempts: int = 4,
        retry_budget_seconds: float = 10.0,
        connect_timeout_seconds: float = 2.0,
        read_timeout_seconds: float = 5.0,
        backoff_base_seconds: float = 0.25,
        backoff_cap_seconds: float = 4.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        key = api_key.strip()
        if not key:
            raise ValueError("api_key is empty")
        self.origin = base_url.rstrip("/")
        self.hub_origin = hub_url.rstrip("/")
        super().__init__(
            upstream=UPSTREAM,
            base_url=f"{self.origin}/v2/farcaster/",
            transport=_ApiKeyTransport(transport or httpx.HTTPTransport(), key),
            secrets=[key],
            policy=RetryPolicy(
                max_attempts=max_attempts,
                budget_seconds=retry_budget_seconds,
                backoff_base_seconds=backoff_base_seconds,
                backoff_cap_seconds=backoff_cap_seconds,
            ),
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            sleep=sleep,
            clock=clock,
            now=now,
            jitter=jitter,
        )

    @classmethod
    def from_settings(cls, settings: NeynarSettings, *, transport: httpx.BaseTransport | None = None) -> Self:
        """A client configured from ``settings`` (resolves the key, from Secrets Manager/SSM if need be)."""
        return cls(
            api_key=settings.resolve_api_key(),
            base_url=settings.neynar_base_url,
            hub_url=settings.neynar_hub_url,
            max_attempts=settings.neynar_max_attempts,
            retry_budget_seconds=settings.neynar_retry_budget_seconds,
            connect_timeout_seconds=settings.neynar_connect_timeout_seconds,
            read_timeout_seconds=settings.neynar_read_timeout_seconds,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"NeynarClient(origin={self.origin!r}, max_attempts={self._requester.policy.max_attempts})"

    # -- methods ------------------------------------------------------------------------------------

    def get_users(self, *, fids: Iterable[int]) -> dict[int, NeynarUser]:
        """``{fid: user}`` for the fids Neynar knows, in batches of at most 100 fids per request."""
        wanted = list(dict.fromkeys(fids))
        for fid in wanted:
            if isinstance(fid, bool) or not isinstance(fid, int) or not 0 < fid <= MAX_FID:
                raise ValueError(f"not a fid: {fid!r}")
        users: dict[int, NeynarUser] = {}
        for start in range(0, len(wanted), MAX_FIDS_PER_CALL):
            batch = wanted[start : start + MAX_FIDS_PER_CALL]
            payload = self._requester.get(_BULK_METHOD, [("fids", ",".join(map(str, batch)))], path=_BULK_PATH)
            asked = set(batch)
            users.update((user.fid, user) for user in parse_users(payload) if user.fid in asked)
        return users

    def get_user(self, *, fid: int) -> NeynarUser | None:
        """One user, or ``None`` when Neynar does not know the fid."""
        return self.get_users(fids=[fid]).get(fid)

    def app_key_fid(self, *, fid: int, key: str) -> int | None:
        """The fid of the app whose ``key`` is an active signer of ``fid``, or ``None`` (see the module doc)."""
        if isinstance(fid, bool) or not isinstance(fid, int) or not 0 < fid <= MAX_FID:
            raise ValueError(f"not a fid: {fid!r}")
        if not _APP_KEY.fullmatch(key.lower()):
            raise ValueError("an app key is 0x followed by 64 hexadecimal digits")
        payload = self._requester.get(_SIGNERS_METHOD, [("fid", str(fid))], path=f"{self.hub_origin}{_SIGNERS_PATH}")
        return find_app_fid(payload, key)


# --------------------------------------------------------------------------------------------------
# The container's client


@per_container(close=NeynarClient.close)
def get_neynar_client(settings: NeynarSettings) -> NeynarClient:
    """The container's client for ``settings`` (created, and the key resolved, on first use)."""
    return NeynarClient.from_settings(settings)
