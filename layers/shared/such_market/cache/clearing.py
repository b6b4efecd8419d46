"""Clearing cache keys by scope (the admin's ``POST /api/admin/cache/clear``), never durable state.

Every scope deletes only names under ``CACHE_NAMESPACES`` (``<prefix>:collections:…``, ``…:ownership:…``,
``…:wallets:…``, ``…:users:…``, ``…:idx:…``): locks, idempotency records, analytics and notification
tokens live under ``<prefix>:durable:…`` and are never matched, whatever the pattern. No ``KEYS``, and
no command holds the server for more than about a millisecond:

- ``clear_collection``: the collection's index (``ReadThroughCache.invalidate_index``: leases first,
  then the values in bounded batches);
- ``clear_user``: the user's keys and their fill leases (``invalidate_keys``);
- ``clear_wallet``: the wallet's contract list, and its tokens in every collection, found with the
  two-pass scan below on the pattern of its owned-token keys (an admin path, so a scan is acceptable);
- ``clear_all``: the two-pass scan over every cache namespace.

The two-pass scan, on every primary (cluster mode: each node's own keyspace, one ``UNLINK`` per hash
slot, pipelined): ``SCAN … MATCH … COUNT 500`` batches, each followed by ``UNLINK`` of what it found.
Pass 1 deletes the fill leases (``…:lease``), pass 2 everything else the pattern matches. Why no fill
that started before the clear can leave its value behind: such a fill's lease existed when pass 1
began. ``SCAN`` returns every key present for the whole iteration, so either pass 1 deleted the lease
(the fill's ``FILL`` then fails: it needs its lease), or the lease vanished during pass 1 — its fill
stored its value before pass 2 began, and that value, present for the whole of pass 2, is deleted
there (or it gave the lease back, or the lease expired: nothing stored). A fill that takes its lease
after the clear began reads the database after it began too, so what it stores is no older than the
clear. ``keysDeleted`` is the sum of ``UNLINK``'s answers: exact even though ``SCAN`` may return a
name twice. A cluster resharding during a clear voids ``SCAN``'s guarantee; run it again then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from such_market.cache.keys import CACHE_NAMESPACES, LEASE_SUFFIX

if TYPE_CHECKING:
    from redis import Redis

    from such_market.cache.client import CacheClient
    from such_market.cache.store import ReadThroughCache

SCAN_COUNT: Final = 500
"""Buckets one ``SCAN`` call visits: about 0.35 ms of server time (1,000: 0.65 ms, with longer outliers)."""
UNLINK_BATCH: Final = 250
"""Names one ``UNLINK`` deletes at most: about 0.4 ms of server time for small values."""


def clear_all(cache: ReadThroughCache) -> int:
    """Every cache key (values, leases, index sets), in bounded batches; returns how many were deleted."""
    prefix = _glob_escape(cache.keys.prefix)
    first_letters = "".join(sorted({namespace[0] for namespace in CACHE_NAMESPACES}))
    namespaces = tuple(f"{cache.keys.prefix}:{namespace}:".encode() for namespace in CACHE_NAMESPACES)
    return _two_pass_clear(cache.client, f"{prefix}:[{first_letters}]*", namespaces)


def clear_collection(cache: ReadThroughCache, address: str) -> int:
    """Every cache key of one collection (``address`` validated and lower-case)."""
    return cache.invalidate_index(cache.keys.collection_index(address))


def clear_wallet(cache: ReadThroughCache, wallet: str) -> int:
    """The wallet's contract list and its tokens in every collection (``wallet`` validated, lower-case)."""
    keys = cache.keys
    deleted = cache.invalidate_keys([keys.wallet_contracts(wallet)])
    owned = f"{_glob_escape(keys.prefix)}:collections:{{*}}:owned:{{{wallet}}}:*"
    return deleted + _two_pass_clear(cache.client, owned, (f"{keys.prefix}:collections:".encode(),))


def clear_user(cache: ReadThroughCache, fid: int) -> int:
    """Every cache key of one Farcaster user."""
    return cache.invalidate_keys(cache.keys.user_keys(fid))


# -- mechanics ----------------------------------------------------------------------------------------
def _two_pass_clear(client: CacheClient, pattern: str, namespaces: tuple[bytes, ...]) -> int:
    """Pass 1: the fill leases ``pattern`` (ending in ``*``) covers; pass 2: everything it covers (see
    the module docstring). Only names starting with one of ``namespaces`` are deleted, whatever matched."""
    nodes, cluster = _primaries(client)
    leases = pattern + LEASE_SUFFIX
    deleted = sum(_scan_and_unlink(node, leases, namespaces, cluster=cluster) for node in nodes)
    return deleted + sum(_scan_and_unlink(node, pattern, namespaces, cluster=cluster) for node in nodes)


def _primaries(client: CacheClient) -> tuple[list[Redis], bool]:
    """The clients of every primary (one for a standalone server), and whether it is a cluster."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        return [client.get_redis_connection(node) for node in primaries], True
    return [client], False


def _scan_and_unlink(node: Redis, pattern: str, namespaces: tuple[bytes, ...], *, cluster: bool) -> int:
    deleted = 0
    cursor = 0
    while True:
        cursor, names = node.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        doomed = [name for name in names if _as_bytes(name).startswith(namespaces)]
        if doomed:
            deleted += _unlink(node, doomed, cluster=cluster)
        if cursor == 0:
            return deleted


def _unlink(node: Redis, names: Sequence[bytes | str], *, cluster: bool) -> int:
    """``UNLINK`` ``names`` in commands of at most ``UNLINK_BATCH`` names, one hash slot each in a
    cluster (a multi-key command may not cross slots), pipelined in one round trip."""
    pipe = node.pipeline(transaction=False)
    for group in _by_slot(names) if cluster else [names]:
        for first in range(0, len(group), UNLINK_BATCH):
            pipe.unlink(*group[first : first + UNLINK_BATCH])
    return sum(int(count) for count in pipe.execute())


def _by_slot(names: Iterable[bytes | str]) -> list[list[bytes | str]]:
    from redis.crc import key_slot

    groups: dict[int, list[bytes | str]] = {}
    for name in names:
        groups.setdefault(key_slot(_as_bytes(name)), []).append(name)
    return list(groups.values())


def _as_bytes(name: bytes | str) -> bytes:
    return name if isinstance(name, bytes) else name.encode()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by ``SCAN … MATCH``."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
