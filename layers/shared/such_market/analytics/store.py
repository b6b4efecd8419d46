"""Analytics in Valkey (data access): per-minute hashes, the alerts hash, and the server's own figures.

Every key lives under the durable prefix (``<prefix>:durable:analytics:…``), so no cache clear touches
it. One hash per minute (``…:analytics:m:<minute since epoch>``) holds, per endpoint family and outcome,
the request count, the total latency and the latency histogram, and per event consumer the events
processed and failed:

    n|<family>|<outcome>            requests
    t|<family>|<outcome>            total latency, µs
    b|<family>|<outcome>            the latency histogram, packed: 6 bytes a bucket (">HI": bucket, count)
    e|<consumer>|<processed|failed> events

Containers add to it in one pipeline per flush: ``HINCRBY`` for the counts, and for each histogram one
short script (``MERGE_HISTOGRAM``) that adds the container's bucket counts to the stored ones and keeps at
most ``MAX_BUCKETS`` buckets, folding the lowest into the lowest one kept (DDSketch's "collapsing lowest":
the upper percentiles, the ones alarms watch, stay exact). So minutes merge across containers by
themselves, and a minute's size is bounded whatever the latencies: at most ``MAX_HISTOGRAM_BYTES`` of
histogram per (family, outcome), at most ``MAX_CELL_MEMORY_BYTES`` (8 KB) of Valkey memory with its
counters, against one hash field (~80 bytes) per distinct bucket before. ``MAX_BUCKETS`` buckets of 1 %
span a factor of 26,000 (e.g. 40 µs to 1 s), so folding only touches quantiles below max/26,000. A minute
hash expires after ``RETENTION_SECONDS``.
Alerts are one hash of JSON records. (Fields ``h|<family>|<outcome>|<bucket>``, one per bucket, were
written before histograms were packed; they are still read, for the retention period.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market.analytics import traffic as traffic_sets
from such_market.cache.keys import CacheKeys

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient

RETENTION_SECONDS: Final = 25 * 3600
"""A minute is kept a little longer than the longest window (24 h)."""
MAX_BUCKETS: Final = 512
"""Histogram buckets kept per (minute, family, outcome); see the module doc."""
_BUCKET: Final = struct.Struct(">HI")
MAX_HISTOGRAM_BYTES: Final = MAX_BUCKETS * _BUCKET.size
MAX_CELL_MEMORY_BYTES: Final = 8 * 1024
"""What one (minute, family, outcome) costs Valkey at most, its allocator's overhead included (``MEMORY
USAGE``; with a million-fold spread of latencies 4.5 KB measured on a standalone server, 6.6 KB on a
cluster node: the data itself is at most ``MAX_HISTOGRAM_BYTES`` + two counters)."""
_MAX_BUCKET_INDEX: Final = 0xFFFF

MERGE_HISTOGRAM: Final = """
-- KEYS[1]: a minute hash; ARGV[1]: a histogram's field; ARGV[2]: increments (packed >HI records);
-- ARGV[3]: the most buckets kept. Adds, then folds the lowest buckets into the lowest one kept.
local counts, buckets = {}, {}
local function add(packed)
  local pos = 1
  while pos < #packed do
    local bucket, count, after = struct.unpack('>HI4', packed, pos)
    if counts[bucket] == nil then
      counts[bucket] = 0
      buckets[#buckets + 1] = bucket
    end
    counts[bucket] = counts[bucket] + count
    pos = after
  end
end
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then add(stored) end
add(ARGV[2])
table.sort(buckets)
local cap, first = tonumber(ARGV[3]), 1
if #buckets > cap then
  first = #buckets - cap + 1
  for i = 1, first - 1 do
    counts[buckets[first]] = counts[buckets[first]] + counts[buckets[i]]
  end
end
local parts = {}
for i = first, #buckets do
  parts[#parts + 1] = struct.pack('>HI4', buckets[i], counts[buckets[i]])
end
redis.call('HSET', KEYS[1], ARGV[1], table.concat(parts))
return #buckets - first + 1
"""


@dataclass(slots=True)
class Cell:
    """What one (minute, family, outcome) holds: requests, total latency (µs) and the histogram."""

    requests: int = 0
    total_us: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, other: Cell) -> None:
        self.requests += other.requests
        self.total_us += other.total_us
        for bucket, count in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + count


@dataclass(slots=True)
class Minute:
    """One minute read back: cells by (family, outcome), events by (consumer, outcome)."""

    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    events: dict[tuple[str, str], int] = field(default_factory=dict)


CellKey = tuple[int, str, str]
"""(minute, family or consumer, outcome)."""


def minute_key(keys: CacheKeys, minute: int) -> str:
    return keys.durable("analytics", "m", str(minute))


def alerts_key(keys: CacheKeys) -> str:
    return keys.durable("analytics", "alerts")


def write(
    client: CacheClient,
    keys: CacheKeys,
    cells: Mapping[CellKey, Cell],
    events: Mapping[CellKey, int],
    *,
    traffic: tuple[int, Mapping[traffic_sets.TrafficKey, int]] | None = None,
) -> None:
    """Add ``cells`` and ``events`` to their minute hashes, and ``traffic`` (window, counts) to the
    traffic sets (``analytics.traffic``), in one pipelined call (not a transaction)."""
    pipe = client.pipeline(transaction=False)
    if traffic is not None and traffic[1]:
        traffic_sets.add_to_pipeline(pipe, keys, traffic[0], traffic[1])
    touched: set[int] = set()
    for (minute, family, outcome), cell in cells.items():
        name = minute_key(keys, minute)
        touched.add(minute)
        pipe.hincrby(name, f"n|{family}|{outcome}", cell.requests)
        pipe.hincrby(name, f"t|{family}|{outcome}", cell.total_us)
        if cell.histogram:
            # EVAL, not EVALSHA: the script is small, the server caches it, and no NOSCRIPT can fail a flush.
            # Sent as a plain command: a cluster pipeline refuses ``eval()`` but routes EVAL by its key.
            pipe.execute_command(
                "EVAL", MERGE_HISTOGRAM, 1, name, f"b|{family}|{outcome}", pack(cell.histogram), MAX_BUCKETS
            )
    for (minute, consumer, outcome), count in events.items():
        touched.add(minute)
        pipe.hincrby(minute_key(keys, minute), f"e|{consumer}|{outcome}", count)
    for minute in touched:
        pipe.expire(minute_key(keys, minute), RETENTION_SECONDS)
    pipe.execute()


def pack(histogram: Mapping[int, int]) -> bytes:
    """A histogram as ``MERGE_HISTOGRAM`` stores it (bucket indices are small and non-negative)."""
    return b"".join(_BUCKET.pack(min(bucket, _MAX_BUCKET_INDEX), count) for bucket, count in histogram.items())


def unpack(packed: bytes) -> dict[int, int]:
    histogram: dict[int, int] = {}
    for bucket, count in _BUCKET.iter_unpack(packed[: len(packed) - len(packed) % _BUCKET.size]):
        histogram[bucket] = histogram.get(bucket, 0) + count
    return histogram


def _parse(raw: Mapping[bytes, bytes]) -> Minute:
    minute = Minute()
    for name, value in raw.items():
        kind, *parts = name.decode().split("|")
        if kind == "b" and len(parts) == 2:
            histogram = minute.cells.setdefault((parts[0], parts[1]), Cell()).histogram
            for bucket, count in unpack(value).items():
                histogram[bucket] = histogram.get(bucket, 0) + count
            continue
        count = int(value)
        if kind == "e" and len(parts) == 2:
            minute.events[(parts[0], parts[1])] = count
            continue
        if len(parts) < 2:
            continue
        cell = minute.cells.setdefault((parts[0], parts[1]), Cell())
        if kind == "n":
            cell.requests = count
        elif kind == "t":
            cell.total_us = count
        elif kind == "h" and len(parts) == 3:
            bucket = int(parts[2])
            cell.histogram[bucket] = cell.histogram.get(bucket, 0) + count
    return minute


def read(client: CacheClient, keys: CacheKeys, minutes: Sequence[int]) -> dict[int, Minute]:
    """The minutes asked for (absent ones are empty), in one pipelined call."""
    pipe = client.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(minute_key(keys, minute))
    answers: list[Any] = pipe.execute()
    return {minute: _parse(raw or {}) for minute, raw in zip(minutes, answers, strict=True)}


def delete(client: CacheClient, keys: CacheKeys, minutes: Iterable[int]) -> int:
    """Delete the minute hashes and the alerts; returns how many keys existed."""
    names = [minute_key(keys, minute) for minute in minutes] + [alerts_key(keys)]
    pipe = client.pipeline(transaction=False)
    for name in names:  # one key per command: the keys live in different cluster slots
        pipe.unlink(name)
    return sum(int(result) for result in pipe.execute())


def read_alerts(client: CacheClient, keys: CacheKeys) -> dict[str, dict[str, Any]]:
    raw: Mapping[bytes, bytes] = client.hgetall(alerts_key(keys))  # type: ignore[assignment]
    return {name.decode(): orjson.loads(value) for name, value in raw.items()}


def write_alerts(
    client: CacheClient, keys: CacheKeys, changed: Mapping[str, Mapping[str, Any]], removed: Iterable[str]
) -> None:
    pipe = client.pipeline(transaction=False)
    if changed:
        pipe.hset(alerts_key(keys), mapping={name: orjson.dumps(record) for name, record in changed.items()})
    if gone := list(removed):
        pipe.hdel(alerts_key(keys), *gone)
    pipe.execute()


@dataclass(frozen=True, slots=True)
class ServerFigures:
    """What the cache server says of itself (summed over the primaries in cluster mode)."""

    keys: int
    memory_used_bytes: int
    evictions: int
    maxmemory_bytes: int
    maxmemory_policy: str | None


def server_figures(client: CacheClient) -> ServerFigures:
    """``DBSIZE`` and ``INFO memory/stats``; in cluster mode summed over every primary."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        sizes: Any = client.dbsize(target_nodes=RedisCluster.PRIMARIES)
        infos: Any = client.info(target_nodes=RedisCluster.PRIMARIES)
        per_node = (
            list(infos.values())
            if isinstance(infos, dict) and infos and isinstance(next(iter(infos.values())), dict)
            else [infos]
        )
        total = sum(sizes.values()) if isinstance(sizes, dict) else int(sizes)
    else:
        total = int(client.dbsize())
        per_node = [client.info()]
    return ServerFigures(
        keys=int(total),
        memory_used_bytes=sum(int(info.get("used_memory", 0)) for info in per_node),
        evictions=sum(int(info.get("evicted_keys", 0)) for info in per_node),
        maxmemory_bytes=sum(int(info.get("maxmemory", 0)) for info in per_node),
        maxmemory_policy=next((str(info["maxmemory_policy"]) for info in per_node if "maxmemory_policy" in info), None),
    )
