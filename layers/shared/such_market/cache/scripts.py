"""Lua scripts of the cache, each touching keys of a single hash slot (cluster-safe).

- ``GET_OR_LEASE``: the miss path in one round trip: return the value if it is fresh, else try to
  take the key's fill lease (SET NX PX) and register the lease in the entity index sets, so that an
  invalidation deletes it together with the values. Waiters call it again while they poll, so when a
  filler dies its lease expires and the next waiter takes over.
- ``FILL``: write a value only while its lease is still ours, then drop the lease and register the
  value in the index sets. An invalidation after the lease was taken deleted the lease, so a fill
  that read the database before that invalidation can never write its stale value afterwards.
- ``RELEASE_IF_OWNER``: delete a key only while it holds our token: a fill lease given back (a failed
  fill), or a lock released (``such_market.locks``); a lease or lock that expired and was taken by
  someone else is never released by its former holder.
- ``INVALIDATE_INDEX``: delete every key an index set tracks (values and leases) and the set itself.
"""

from __future__ import annotations

GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value and tonumber(string.sub(value, 4, 16)) > tonumber(ARGV[4]) then
  return value
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  for i = 3, #KEYS do
    redis.call('SADD', KEYS[i], KEYS[2])
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
  return 1
end
return 0
"""

FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('SREM', KEYS[i], KEYS[2])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return 1
"""

RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

INVALIDATE_INDEX = """
local deleted = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for first = 1, #members, 1000 do
    local last = math.min(first + 999, #members)
    deleted = deleted + redis.call('UNLINK', unpack(members, first, last))
  end
  redis.call('UNLINK', KEYS[i])
end
return deleted
"""
