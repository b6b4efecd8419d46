"""Lua scripts of the cache, each touching keys of a single hash slot (cluster-safe).

An entity index (``<prefix>:idx:…``) is a sorted set: its members are the cache keys of one entity, each
scored with the server time (ms) at which that key's value expires physically. It comes with three
companions in its slot (``such_market.cache.keys``): its *lease set* (the fill leases in flight for its
keys, scored with their expiry), its *drain list* (tombstones still being drained) and the tombstones
themselves (former index sets, renamed by an invalidation).

**None of them has a TTL**, on purpose. Under ElastiCache's ``volatile-lru`` (and every ``volatile-*``
policy) only keys with a TTL are evicted, so an index can never be evicted while values it tracks are
still stored: no invalidation can miss a key because its index was evicted. In exchange they must bound
themselves: every write to an index first drops the members whose values have expired
(``ZREMRANGEBYSCORE … -inf now``, on the server's clock, the clock that expires the values); an index
whose keys all expired and that no fill touches again is pruned by the reaper
(``such_market.cache.reaping``); an empty sorted set or list disappears by itself; and an index holds at
most ``INDEX_CAP`` live keys (a fill past the cap is served but not stored).

- ``GET_OR_LEASE``: the miss path in one round trip: return the value if it is fresh, else try to
  take the key's fill lease (SET NX PX) and register the lease in the lease set of every index, so
  that an invalidation finds every fill in flight without walking the values. Waiters call it again
  while they poll, so when a filler dies its lease expires and the next waiter takes over.
- ``FILL``: write a value only while its lease is still ours and every index has room for it, then drop
  the lease, register the value in the index sets (scored with its expiry) and the lease's name out of
  the lease sets. An invalidation after the lease was taken deleted the lease, so a fill that read the
  database before that invalidation can never write its stale value afterwards. A fill whose lease is
  gone and unheld forgets its name too. Returns 1 (stored), 0 (lease lost) or 2 (an index is full: not
  stored, lease given back).
- ``RELEASE_IF_OWNER``: delete a key only while it holds our token: a fill lease given back (a failed
  fill; any further keys are lease sets to forget it in), or a lock released (``such_market.locks``);
  a lease or lock that expired and was taken by someone else is never released by its former holder.
- ``INVALIDATE_INDEX``: the atomic first step of invalidating an index, O(leases in flight + one
  batch): delete every lease in the lease set (so every fill that started before now fails), rename
  the index set to a fresh tombstone (O(1)) queued on the drain list, and drain its first batch.
  Returns ``{keys deleted, tombstones still to drain, 1 if the new tombstone is not drained yet}``.
- ``DRAIN``: one bounded batch of a tombstone: ``ZPOPMIN`` about ``ARGV[1]`` names and UNLINK them (so
  the tombstone shrinks as it drains and its end frees nothing big at once); when it is empty, take it
  off the drain list. Nothing adds to a tombstone. Returns ``{keys deleted, 1 if more remain}``.
- ``PRUNE``: the reaper's step for one index: drop expired members of the index and of its lease set;
  return the latest expiry still tracked and any tombstone left by an invalidation that died mid-drain.
"""

from __future__ import annotations

_NOW_MS = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
"""

GET_OR_LEASE = (
    """
local value = redis.call('GET', KEYS[1])
if value and tonumber(string.sub(value, 4, 16)) > tonumber(ARGV[3]) then
  return value
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then"""
    + _NOW_MS
    + """
  for i = 4, #KEYS, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    redis.call('ZADD', KEYS[i], now + ARGV[2], KEYS[2])
  end
  return 1
end
return 0
"""
)
"""KEYS: value, its lease, then (index, its lease set) pairs. ARGV: token, lease ms, now ms (freshness)."""

FILL = (
    _NOW_MS
    + """
local holder = redis.call('GET', KEYS[2])
if holder ~= ARGV[1] then
  if not holder then
    for i = 4, #KEYS, 2 do
      redis.call('ZREM', KEYS[i], KEYS[2])
    end
  end
  return 0
end
for i = 3, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4]) and not redis.call('ZSCORE', KEYS[i], KEYS[1]) then
    redis.call('DEL', KEYS[2])
    for j = 4, #KEYS, 2 do
      redis.call('ZREM', KEYS[j], KEYS[2])
    end
    return 2
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
for i = 3, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], now + ARGV[3], KEYS[1])
  redis.call('ZREM', KEYS[i + 1], KEYS[2])
end
return 1
"""
)
"""KEYS: value, its lease, then (index, its lease set) pairs. ARGV: token, value, value TTL ms, index cap."""

RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  for i = 2, #KEYS do
    redis.call('ZREM', KEYS[i], KEYS[1])
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS: the lease or lock, then lease sets to forget a lease in. ARGV: token."""

_DRAIN_BATCH = """
local function drain(tombstone, drains, count)
  local popped = redis.call('ZPOPMIN', tombstone, count)
  local deleted = 0
  local names = {}
  for i = 1, #popped, 2 do
    names[#names + 1] = popped[i]
  end
  for first = 1, #names, 1000 do
    deleted = deleted + redis.call('UNLINK', unpack(names, first, math.min(first + 999, #names)))
  end
  if redis.call('EXISTS', tombstone) == 1 then
    return deleted, 1
  end
  redis.call('LREM', drains, 0, tombstone)
  return deleted, 0
end
"""

INVALIDATE_INDEX = (
    _DRAIN_BATCH
    + """
local deleted, more = 0, 0
local leases = redis.call('ZRANGE', KEYS[2], 0, -1)
for first = 1, #leases, 1000 do
  deleted = deleted + redis.call('UNLINK', unpack(leases, first, math.min(first + 999, #leases)))
end
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('RPUSH', KEYS[3], KEYS[4])
  local drained
  drained, more = drain(KEYS[4], KEYS[3], ARGV[1])
  deleted = deleted + drained
end
return {deleted, redis.call('LRANGE', KEYS[3], 0, -1), more}
"""
)
"""KEYS: index, its lease set, its drain list, a new tombstone name. ARGV: batch size."""

DRAIN = (
    _DRAIN_BATCH
    + """
local deleted, more = drain(KEYS[1], KEYS[2], ARGV[1])
return {deleted, more}
"""
)
"""KEYS: a tombstone, its index's drain list. ARGV: batch size."""

PRUNE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local latest = 0
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 then latest = tonumber(last[2]) end
last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last > 0 and tonumber(last[2]) > latest then latest = tonumber(last[2]) end
return {latest, now, redis.call('LRANGE', KEYS[3], 0, -1)}
"""
)
"""KEYS: index, its lease set, its drain list. Returns ``{latest expiry still tracked (0: none), the server's
now (ms), tombstones left by an invalidation that died mid-drain}``."""
