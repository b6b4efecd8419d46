"""Which collections (and which first-page sizes) are requested: the cache warmer's view of traffic.

The recorder counts, per container, every cache-fronted answer of a collection route by contract address,
and the first NFT pages (page 0, no cursor, no filter) by address and page size. Each flush adds the
interval's heaviest ``MAX_MEMBERS_PER_FLUSH`` of each to two sorted sets of the current window, in the
same pipeline as the rest of the analytics (``add_to_pipeline``), so recording costs a HIT one dict
increment and no round trip. What a flush leaves out is the long tail, which the warmer would not warm
anyway: a sample of the heavy hitters, not of every key.

Keys (durable, one hash slot ``{traffic}`` so windows can be merged by one ``ZUNION`` in cluster mode too)::

    <prefix>:durable:analytics:{traffic}:c:<window>   member <address>          score: requests
    <prefix>:durable:analytics:{traffic}:p:<window>   member <address>|<size>   score: first-page requests

A window is ``WINDOW_SECONDS`` long and each set keeps its ``MAX_MEMBERS`` heaviest members. Reading
(``top_collections``) merges the last ``WINDOWS_READ`` windows with weights halving per window of age,
so recent traffic counts most and a collection nobody asks for any more fades out within half an hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from such_market.cache.keys import CacheKeys

if TYPE_CHECKING:
    from redis.client import Pipeline
    from redis.cluster import ClusterPipeline

    from such_market.cache.client import CacheClient

WINDOW_SECONDS: Final = 300
WINDOWS_READ: Final = 6
DECAY: Final = 0.5
"""Weight of a window one window older than the next (so a window's weight is ``DECAY ** age``)."""
MAX_MEMBERS: Final = 1000
MAX_MEMBERS_PER_FLUSH: Final = 200
RETENTION_SECONDS: Final = WINDOW_SECONDS * (WINDOWS_READ + 1)

TrafficKey = tuple[str, str | None]
"""(contract address as requested, first-page size as requested or ``None`` for any collection answer)."""


def collections_key(keys: CacheKeys, window: int) -> str:
    return keys.durable("analytics", "{traffic}", "c", str(window))


def pages_key(keys: CacheKeys, window: int) -> str:
    return keys.durable("analytics", "{traffic}", "p", str(window))


def window_of(seconds: float) -> int:
    return int(seconds // WINDOW_SECONDS)


def _normalized(address: str, size: str | None) -> tuple[str, int | None] | None:
    """The counted address (lower case) and page size, or ``None`` for input the handler would refuse."""
    address = address.lower()
    if len(address) != 42 or not address.startswith("0x"):
        return None
    if size is None:
        return address, None
    try:
        number = int(size)
    except ValueError:
        return None
    return (address, number) if 1 <= number <= 100 else None


def add_to_pipeline(
    pipe: Pipeline | ClusterPipeline, keys: CacheKeys, window: int, counts: Mapping[TrafficKey, int]
) -> None:
    """Queue the ``ZINCRBY``s of one flush (its heaviest members), the trims and the expiries on ``pipe``."""
    collections: dict[str, int] = {}
    pages: dict[str, int] = {}
    for (raw_address, raw_size), count in counts.items():
        parsed = _normalized(raw_address, raw_size)
        if parsed is None:
            continue
        address, size = parsed
        collections[address] = collections.get(address, 0) + count
        if size is not None:
            member = f"{address}|{size}"
            pages[member] = pages.get(member, 0) + count
    for name, members in ((collections_key(keys, window), collections), (pages_key(keys, window), pages)):
        if not members:
            continue
        heaviest = sorted(members.items(), key=lambda item: item[1], reverse=True)[:MAX_MEMBERS_PER_FLUSH]
        for member, count in heaviest:
            pipe.zincrby(name, count, member)
        pipe.zremrangebyrank(name, 0, -(MAX_MEMBERS + 1))
        pipe.expire(name, RETENTION_SECONDS)


@dataclass(frozen=True, slots=True)
class HotCollection:
    """A collection by recent traffic: its decayed request score and first-page sizes asked for."""

    address: str
    score: float
    page_sizes: tuple[int, ...]


def top_collections(client: CacheClient, keys: CacheKeys, *, now: float, limit: int) -> list[HotCollection]:
    """The ``limit`` collections with the most recent traffic, heaviest first (one pipelined call)."""
    current = window_of(now)
    windows = [current - age for age in range(WINDOWS_READ)]
    weights = [DECAY**age for age in range(WINDOWS_READ)]
    pipe = client.pipeline(transaction=False)
    pipe.zunion({collections_key(keys, w): weight for w, weight in zip(windows, weights, strict=True)}, withscores=True)
    pipe.zunion({pages_key(keys, w): weight for w, weight in zip(windows, weights, strict=True)}, withscores=True)
    ranked, sized = pipe.execute()
    top = sorted(((member.decode(), float(score)) for member, score in ranked), key=lambda item: -item[1])[:limit]
    sizes: dict[str, list[tuple[float, int]]] = {}
    for member, score in sized:
        address, _, size = member.decode().partition("|")
        sizes.setdefault(address, []).append((float(score), int(size)))
    return [
        HotCollection(address, score, tuple(size for _, size in sorted(sizes.get(address, []), reverse=True)))
        for address, score in top
    ]


def page_sizes_of(
    client: CacheClient, keys: CacheKeys, *, now: float, addresses: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """The first-page sizes recently requested for each of ``addresses`` (most requested first)."""
    wanted = set(addresses)
    current = window_of(now)
    names = [pages_key(keys, current - age) for age in range(WINDOWS_READ)]
    merged: Any = client.zunion(names, withscores=True)
    sizes: dict[str, list[tuple[float, int]]] = {}
    for member, score in merged:
        address, _, size = member.decode().partition("|")
        if address in wanted:
            sizes.setdefault(address, []).append((float(score), int(size)))
    return {address: tuple(size for _, size in sorted(found, reverse=True)) for address, found in sizes.items()}


def delete(client: CacheClient, keys: CacheKeys, *, now: float) -> int:
    """Forget the recorded traffic (every window still kept); returns how many keys existed."""
    current = window_of(now)
    names = [name(keys, current - age) for age in range(WINDOWS_READ + 1) for name in (collections_key, pages_key)]
    return int(client.unlink(*names))
