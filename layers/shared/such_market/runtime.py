"""The per-container dependencies of a function, created lazily and once, from its settings' parts.

``runtime_for(Settings)`` loads a function's settings (once per container) and returns its ``Runtime``:
use cases ask it for what they need — the database connection, the cache front or client, the Alchemy
or Neynar client, the event publisher — and each is built from its own settings part on first use, so a
request answered from the cache never opens a database connection or an httpx client. Asking for a
part the function's settings do not have is a ``ConfigurationError`` naming it.

This module maps no errors: a failing dependency raises its own exception, and the edge
(``such_market.failures``) turns it into the API's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from such_market.cache.client import get_client
from such_market.cache.store import ReadThroughCache, get_cache
from such_market.config import CacheSettings, DatabaseSettings, EventSettings, FunctionSettings, load_settings
from such_market.container import per_container
from such_market.db import watchdog
from such_market.db.connection import get_connection
from such_market.upstream.alchemy_settings import AlchemySettings
from such_market.upstream.neynar_settings import NeynarSettings

if TYPE_CHECKING:
    import psycopg

    from such_market.cache.client import CacheClient
    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient
    from such_market.upstream.neynar import NeynarClient


class ReadPathSettings(FunctionSettings):
    """What the collection endpoints need: database, cache, bus (first-seen ingestion) and Alchemy."""

    database: DatabaseSettings
    cache: CacheSettings
    events: EventSettings
    alchemy: AlchemySettings


@dataclass(slots=True)
class Runtime:
    """Lazily created, container-wide dependencies for one function's settings.

    The cache front is kept on the runtime after its first use: a cached read asks for it several
    times, and each ``get_cache`` lookup hashes the settings part (a few µs on the hot path). The
    runtime itself is per container, so ``close_all`` forgets both together."""

    settings: FunctionSettings
    _cache: ReadThroughCache | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cache(self) -> ReadThroughCache:
        cache = self._cache
        if cache is None:
            cache = self._cache = get_cache(self.settings.part(CacheSettings))
        return cache

    @property
    def cache_client(self) -> CacheClient:
        return get_client(self.settings.part(CacheSettings))

    @property
    def conn(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = get_connection(self.settings.part(DatabaseSettings))
        watchdog.guard(conn)
        return conn

    @property
    def alchemy(self) -> AlchemyClient:
        from such_market.upstream.alchemy import get_alchemy_client

        return get_alchemy_client(self.settings.part(AlchemySettings))

    @property
    def neynar(self) -> NeynarClient:
        from such_market.upstream.neynar import get_neynar_client

        return get_neynar_client(self.settings.part(NeynarSettings))

    @property
    def publisher(self) -> EventPublisher:
        from such_market.events.publisher import get_publisher

        return get_publisher(self.settings.part(EventSettings))


@per_container()
def runtime_for(model: type[FunctionSettings]) -> Runtime:
    """The container's runtime for the function whose settings model is ``model``."""
    return Runtime(load_settings(model))
