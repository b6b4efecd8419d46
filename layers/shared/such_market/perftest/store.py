"""Performance-test runs in Valkey (data access), under the durable prefix so no cache clear touches them.

All in one hash slot (``{perftest}``)::

    <prefix>:durable:perftest:{perftest}:run:<runId>   the run's JSON record, kept RETENTION_SECONDS
    <prefix>:durable:perftest:{perftest}:runs          sorted set of run ids by request time (for reset)
    <prefix>:durable:perftest:{perftest}:latest        the id of the run requested last
    <prefix>:durable:perftest:{perftest}:claim:<runId> SET NX by the function that runs it (one runner)
    <prefix>:durable:perftest:{perftest}:lock          held from the request to the run's end: one run at a time

The lock holds ``<runId>:<secret>`` for at most the run's budget plus a margin, so a runner that died
frees it by itself; the secret is in the run's record, never in an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market.cache.keys import CacheKeys
from such_market.cache.scripts import RELEASE_IF_OWNER

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient

RETENTION_SECONDS: Final = 7 * 24 * 3600
MAX_RUNS_KEPT: Final = 50
LOCK_VALUE_FIELD: Final = "lockValue"


def _key(keys: CacheKeys, *parts: str) -> str:
    return keys.durable("perftest", "{perftest}", *parts)


def lock_key(keys: CacheKeys) -> str:
    return _key(keys, "lock")


def take_lock(client: CacheClient, keys: CacheKeys, value: str, *, ttl_ms: int) -> bool:
    """Take the one-run-at-a-time lock; whether it was free."""
    return bool(client.set(lock_key(keys), value, nx=True, px=ttl_ms))


def release_lock(client: CacheClient, keys: CacheKeys, value: str) -> None:
    """Release the lock if it still holds ``value`` (never someone else's)."""
    client.register_script(RELEASE_IF_OWNER)(keys=[lock_key(keys)], args=[value])


def lock_held(client: CacheClient, keys: CacheKeys) -> bool:
    return bool(client.exists(lock_key(keys)))


def save(client: CacheClient, keys: CacheKeys, record: dict[str, Any], *, new: bool = False) -> None:
    """Write a run's record (and, for a new run, index it and make it the latest)."""
    run_id = str(record["runId"])
    pipe = client.pipeline(transaction=False)
    pipe.set(_key(keys, "run", run_id), orjson.dumps(record), ex=RETENTION_SECONDS)
    if new:
        index = _key(keys, "runs")
        pipe.zadd(index, {run_id: float(record["requestedAtMs"])})
        pipe.zremrangebyrank(index, 0, -(MAX_RUNS_KEPT + 1))
        pipe.expire(index, RETENTION_SECONDS)
        pipe.set(_key(keys, "latest"), run_id, ex=RETENTION_SECONDS)
    pipe.execute()


def load(client: CacheClient, keys: CacheKeys, run_id: str) -> dict[str, Any] | None:
    raw: bytes | None = client.get(_key(keys, "run", run_id))  # type: ignore[assignment]
    return None if raw is None else orjson.loads(raw)


def latest_id(client: CacheClient, keys: CacheKeys) -> str | None:
    raw: bytes | None = client.get(_key(keys, "latest"))  # type: ignore[assignment]
    return None if raw is None else raw.decode()


def claim(client: CacheClient, keys: CacheKeys, run_id: str, *, ttl_seconds: int) -> bool:
    """Whether this caller is the one to run ``run_id`` (a redelivered event finds it claimed)."""
    return bool(client.set(_key(keys, "claim", run_id), b"1", nx=True, ex=ttl_seconds))


def delete_all(client: CacheClient, keys: CacheKeys) -> int:
    """Forget every stored run; returns how many runs there were."""
    index = _key(keys, "runs")
    ids = [member.decode() for member in client.zrange(index, 0, -1)]  # type: ignore[union-attr]
    names = [_key(keys, "run", run_id) for run_id in ids] + [_key(keys, "claim", run_id) for run_id in ids]
    names += [index, _key(keys, "latest")]
    client.unlink(*names)
    return len(ids)


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as answered: without the lock's secret and the internal timestamp."""
    return {name: value for name, value in record.items() if name not in {LOCK_VALUE_FIELD, "requestedAtMs"}}
