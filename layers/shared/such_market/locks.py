"""Short mutual-exclusion locks in the cache's durable namespace, each held under an owner token.

``held_lock`` takes ``<prefix>:durable:locks:<name>`` with SET NX PX and a random owner token, and
releases it on every path (success, error, cancellation) with a compare-and-delete script, so a lock
that expired and was taken by someone else is never released by its former holder. The TTL bounds
how long a crashed holder can block others.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

from such_market.cache.scripts import RELEASE_IF_OWNER
from such_market.errors import SuchMarketError

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient


class LockBusyError(SuchMarketError):
    """Someone else holds the lock."""


@contextlib.contextmanager
def held_lock(client: CacheClient, key: str, *, ttl_ms: int) -> Iterator[str]:
    """Hold ``key`` for the block (at most ``ttl_ms``); raises ``LockBusyError`` when it is taken."""
    token = secrets.token_hex(16)
    if not client.set(key, token, nx=True, px=ttl_ms):
        raise LockBusyError(key)
    try:
        yield token
    finally:
        client.register_script(RELEASE_IF_OWNER)(keys=[key], args=[token])
