"""The per-container dependencies of a function, created lazily and once: the database connection,
the cache front, the Alchemy client and the event publisher.

Handlers build a ``Runtime`` from their validated settings; use cases take it and ask for what they
need, so a request that is answered from the cache never opens a database connection or an httpx
client. Database failures surface as ``ServiceUnavailableError`` (503 with ``Retry-After``), which the
cache front answers with a kept value when it has one.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from such_market.cache.store import ReadThroughCache, get_cache
from such_market.config import CacheSettings, DatabaseSettings, EventSettings
from such_market.db.connection import get_connection
from such_market.errors import ServiceUnavailableError
from such_market.upstream.settings import AlchemySettings

if TYPE_CHECKING:
    import psycopg

    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient

DATABASE_RETRY_AFTER_SECONDS = 5
UPSTREAM_RETRY_AFTER_SECONDS = 10


class ReadPathSettings(DatabaseSettings, CacheSettings, EventSettings, AlchemySettings):
    """What the collection endpoints need: database, cache, bus (first-seen ingestion) and Alchemy."""


@dataclass
class Runtime:
    """Lazily created, container-wide dependencies for one settings object."""

    settings: ReadPathSettings
    _publisher: EventPublisher | None = field(default=None, repr=False)

    @property
    def cache(self) -> ReadThroughCache:
        return get_cache(self.settings)

    @property
    def conn(self) -> psycopg.Connection[tuple[object, ...]]:
        with database_errors():
            return get_connection(self.settings)

    @property
    def alchemy(self) -> AlchemyClient:
        from such_market.upstream.alchemy import get_alchemy_client

        return get_alchemy_client(self.settings)

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            from such_market.events.publisher import EventPublisher

            self._publisher = EventPublisher(self.settings)
        return self._publisher


@functools.cache
def runtime_for(settings: ReadPathSettings) -> Runtime:
    """The container's runtime for ``settings``."""
    return Runtime(settings)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn "the database cannot answer" into a 503 (other errors are bugs and stay 500)."""
    import psycopg

    try:
        yield
    except (psycopg.OperationalError, psycopg.errors.QueryCanceled) as error:
        raise ServiceUnavailableError(
            "the database is unavailable, try again shortly", retry_after=DATABASE_RETRY_AFTER_SECONDS
        ) from error


@contextlib.contextmanager
def upstream_errors() -> Iterator[None]:
    """Turn an exhausted or rate-limited upstream into a 503 with ``Retry-After``."""
    from such_market.upstream.errors import UpstreamRateLimited, UpstreamUnavailable

    try:
        yield
    except UpstreamRateLimited as error:
        retry_after = int(error.retry_after or UPSTREAM_RETRY_AFTER_SECONDS)
        raise ServiceUnavailableError("the NFT data provider is rate limiting us", retry_after=retry_after) from error
    except UpstreamUnavailable as error:
        raise ServiceUnavailableError(
            "the NFT data provider is unavailable", retry_after=UPSTREAM_RETRY_AFTER_SECONDS
        ) from error
