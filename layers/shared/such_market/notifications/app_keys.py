"""Whether an app key is an active key of a fid: Neynar's hub answer, cached briefly in the cache.

``app_fid_of(fid=…, key=…)`` is the fid of the app that registered ``key`` as a signer of ``fid`` (the
check ``@farcaster/miniapp-node``'s ``verifyAppKeyWithNeynar`` makes: ``GET /v1/onChainSignersByFid``
on Neynar's hub, the key among the fid's active signers), or ``None`` when it is not one. The answer is
kept under ``<prefix>:appkeys:{<fid>}:<key>`` for ``VALID_FOR_SECONDS`` (a revoked key stays accepted
that long at most) or, when the key is not one, ``INVALID_FOR_SECONDS`` (a key just added is refused
that long at most), so replays and retries of one event ask Neynar once. A cache that cannot answer is
skipped (the check then always asks Neynar); Neynar's own failures propagate (the edge answers 503, and
the client delivers the event again later).

The cache is per (fid, key), so a fresh random key always misses: every lookup Neynar is asked for first
takes a token from the shared buckets of ``cache.throttle`` — the caller's source IP
(``LOOKUPS_PER_SOURCE``), the header's fid (``LOOKUPS_PER_FID``) and overall (``LOOKUPS_GLOBAL``) — or
the edge answers 429 ``app_key_lookups_rate_limited`` with ``Retry-After``, and Neynar is not asked. A
cached answer costs no token.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from such_market.cache.keys import CacheKeys
from such_market.errors import TooManyRequestsError
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient
    from such_market.cache.store import ReadThroughCache
    from such_market.upstream.neynar import NeynarClient

VALID_FOR_SECONDS: Final = 300
INVALID_FOR_SECONDS: Final = 30
_NOT_AN_APP_KEY: Final = b"0"
LOOKUPS_PER_SOURCE: Final = (10, 0.2)
"""Neynar lookups one source IP may cause: 10 at once, then one per 5 s."""
LOOKUPS_PER_FID: Final = (5, 0.1)
"""Neynar lookups one fid's events may cause: 5 at once, then one per 10 s (a user has a client or two)."""
LOOKUPS_GLOBAL: Final = (200, 5.0)
"""Neynar lookups overall: 200 at once, then 5 a second."""


def _throttle_lookup(throttle: ReadThroughCache, keys: CacheKeys, *, fid: int, source: str | None) -> None:
    """Take a lookup token for ``source``, ``fid`` and overall, or raise 429 with Retry-After."""
    from such_market.cache.throttle import Bucket, take

    buckets = [
        Bucket(keys.durable("throttle", "{appkeys}", "fid", str(fid)), *LOOKUPS_PER_FID),
        Bucket(keys.durable("throttle", "{appkeys}", "global"), *LOOKUPS_GLOBAL),
    ]
    if source is not None:
        buckets.insert(0, Bucket(keys.durable("throttle", "{appkeys}", "ip", source), *LOOKUPS_PER_SOURCE))
    wait = take(throttle, buckets)
    if wait > 0:
        raise TooManyRequestsError(
            "too many app-key checks; try again shortly",
            code="app_key_lookups_rate_limited",
            retry_after=max(1, math.ceil(wait)),
        )


def _cached(cache: CacheClient, key: str) -> bytes | None:
    from such_market.cache.client import cache_errors

    try:
        value = cache.get(key)
    except cache_errors() as error:
        logger.warning("app-key cache unavailable; asking Neynar", extra={"error_type": type(error).__name__})
        return None
    return value if isinstance(value, bytes) else None


def _remember(cache: CacheClient, key: str, value: bytes, ttl_seconds: int) -> None:
    from such_market.cache.client import cache_errors

    try:
        cache.set(key, value, ex=ttl_seconds)
    except cache_errors() as error:
        logger.warning("app-key cache unavailable; not kept", extra={"error_type": type(error).__name__})


def app_fid_of(
    *,
    neynar: NeynarClient,
    cache: CacheClient,
    keys: CacheKeys,
    fid: int,
    key: str,
    throttle: ReadThroughCache | None = None,
    source: str | None = None,
) -> int | None:
    """The app fid of ``key`` as a signer of ``fid``, or ``None`` (see the module doc); a lookup Neynar
    must answer is throttled through ``throttle`` (per ``source`` IP, per fid and overall) when given."""
    cache_key = keys.app_key(fid, key.lower())
    cached = _cached(cache, cache_key)
    if cached is not None and cached.isdigit():
        return int(cached) or None
    if throttle is not None:
        _throttle_lookup(throttle, keys, fid=fid, source=source)
    app_fid = neynar.app_key_fid(fid=fid, key=key)
    if app_fid is None:
        _remember(cache, cache_key, _NOT_AN_APP_KEY, INVALID_FOR_SECONDS)
    else:
        _remember(cache, cache_key, str(app_fid).encode(), VALID_FOR_SECONDS)
    return app_fid
