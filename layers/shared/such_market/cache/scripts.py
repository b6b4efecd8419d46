"""Lua scripts of the cache, each touching keys of a single hash slot (cluster-safe).

An entity index (``<prefix>:idx:…``) comes with three companions in its slot (``such_market.cache.keys``):
its *lease set* (the fill leases in flight for its keys), its *drain list* (tombstones still being
drained) and the tombstones themselves (former index sets, renamed by an invalidation).

- ``GET_OR_LEASE``: the miss path in one round trip: return the value if it is fresh, else try to
  take the key's fill lease (SET NX PX) and register the lease in the lease set of every index, so
  that an invalidation finds every fill in flight without walking the values. Waiters call it again
  while they poll, so when a filler dies its lease expires and the next waiter takes over.
- ``FILL``: write a value only while its lease is still ours, then drop the lease, register the
  value in the index sets and the lease's name out of the lease sets. An invalidation after the lease
  was taken deleted the lease, so a fill that read the database before that invalidation can never
  write its stale value afterwards. A fill whose lease is gone and unheld forgets its name too.
- ``RELEASE_IF_OWNER``: delete a key only while it holds our token: a fill lease given back (a failed
  fill; any further keys are lease sets to forget it in), or a lock released (``such_market.locks``);
  a lease or lock that expired and was taken by someone else is never released by its former holder.
- ``INVALIDATE_INDEX``: the atomic first step of invalidating an index, O(leases in flight + one
  batch): delete every lease in the lease set (so every fill that started before now fails), rename
  the index set to a fresh tombstone (O(1)) queued on the drain list, and drain its first batch.
  Returns ``{keys deleted, tombstones still to drain, the new tombstone's next cursor}``.
- ``DRAIN``: one bounded batch of a tombstone: SSCAN about ``ARGV[1]`` names from the cursor and
  UNLINK them, and SREM them from the tombstone (so it shrinks as it drains and its end frees nothing
  big at once); when the scan is complete, delete the tombstone and take it off the drain list. Nothing
  adds to a tombstone, so SSCAN returns each name it still holds (SPOP would cost twice as much per name).
  Returns ``{keys deleted, next cursor}`` ("0" once drained).
"""

from __future__ import annotations

GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value and tonumber(string.sub(value, 4, 16)) > tonumber(ARGV[4]) then
  return value
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  for i = 4, #KEYS, 2 do
    redis.call('SADD', KEYS[i], KEYS[2])
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
  return 1
end
return 0
"""
"""KEYS: value, its lease, then (index, its lease set) pairs. ARGV: token, lease ms, index TTL s, now ms."""

FILL = """
local holder = redis.call('GET', KEYS[2])
if holder ~= ARGV[1] then
  if not holder then
    for i = 4, #KEYS, 2 do
      redis.call('SREM', KEYS[i], KEYS[2])
    end
  end
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
for i = 3, #KEYS, 2 do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
  redis.call('SREM', KEYS[i + 1], KEYS[2])
end
return 1
"""
"""KEYS: value, its lease, then (index, its lease set) pairs. ARGV: token, value, value TTL ms, index TTL s."""

RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  for i = 2, #KEYS do
    redis.call('SREM', KEYS[i], KEYS[1])
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS: the lease or lock, then lease sets to forget a lease in. ARGV: token."""

_DRAIN_BATCH = """
local function drain(tombstone, drains, count, cursor)
  local scanned = redis.call('SSCAN', tombstone, cursor, 'COUNT', count)
  local names = scanned[2]
  local deleted = 0
  for first = 1, #names, 1000 do
    local last = math.min(first + 999, #names)
    deleted = deleted + redis.call('UNLINK', unpack(names, first, last))
    redis.call('SREM', tombstone, unpack(names, first, last))
  end
  if scanned[1] == '0' then
    redis.call('UNLINK', tombstone)
    redis.call('LREM', drains, 0, tombstone)
  end
  return deleted, scanned[1]
end
"""

INVALIDATE_INDEX = (
    _DRAIN_BATCH
    + """
local deleted, cursor = 0, '0'
local leases = redis.call('SMEMBERS', KEYS[2])
for first = 1, #leases, 1000 do
  deleted = deleted + redis.call('UNLINK', unpack(leases, first, math.min(first + 999, #leases)))
end
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('RPUSH', KEYS[3], KEYS[4])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  local drained
  drained, cursor = drain(KEYS[4], KEYS[3], ARGV[1], '0')
  deleted = deleted + drained
end
return {deleted, redis.call('LRANGE', KEYS[3], 0, -1), cursor}
"""
)
"""KEYS: index, its lease set, its drain list, a new tombstone name. ARGV: batch size, drain list TTL s."""

DRAIN = (
    _DRAIN_BATCH
    + """
local deleted, cursor = drain(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {deleted, cursor}
"""
)
"""KEYS: a tombstone, its index's drain list. ARGV: batch size, cursor ("0" to start)."""
