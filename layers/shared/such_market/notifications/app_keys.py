"""Whether an app key is an active key of a fid: Neynar's hub answer, cached briefly in the cache.

``app_fid_of(fid=…, key=…)`` is the fid of the app that registered ``key`` as a signer of ``fid`` (the
check ``@farcaster/miniapp-node``'s ``verifyAppKeyWithNeynar`` makes: ``GET /v1/onChainSignersByFid``
on Neynar's hub, the key among the fid's active signers), or ``None`` when it is not one. The answer is
kept under ``<prefix>:appkeys:{<fid>}:<key>`` for ``VALID_FOR_SECONDS`` (a revoked key stays accepted
that long at most) or, when the key is not one, ``INVALID_FOR_SECONDS`` (a key just added is refused
that long at most), so replays and retries of one event ask Neynar once. A cache that cannot answer is
skipped (the check then always asks Neynar); Neynar's own failures propagate (the edge answers 503, and
the client delivers the event again later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from such_market.cache.keys import CacheKeys
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient
    from such_market.upstream.neynar import NeynarClient

VALID_FOR_SECONDS: Final = 300
INVALID_FOR_SECONDS: Final = 30
_NOT_AN_APP_KEY: Final = b"0"


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


def app_fid_of(*, neynar: NeynarClient, cache: CacheClient, keys: CacheKeys, fid: int, key: str) -> int | None:
    """The app fid of ``key`` as a signer of ``fid``, or ``None`` (see the module doc)."""
    cache_key = keys.app_key(fid, key.lower())
    cached = _cached(cache, cache_key)
    if cached is not None and cached.isdigit():
        return int(cached) or None
    app_fid = neynar.app_key_fid(fid=fid, key=key)
    if app_fid is None:
        _remember(cache, cache_key, _NOT_AN_APP_KEY, INVALID_FOR_SECONDS)
    else:
        _remember(cache, cache_key, str(app_fid).encode(), VALID_FOR_SECONDS)
    return app_fid
