"""The health use case: is the database reachable and migrated, is the cache reachable?

Answers ``healthy`` only when PostgreSQL answers, its schema is at least ``REQUIRED_SCHEMA_VERSION``
and the cache answers PING. Each check is bounded by the client timeouts of its settings and reports
its latency; failures are described by kind ("unreachable", "not migrated"), never by internals.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

from such_market import deadline
from such_market.cache.client import get_client
from such_market.config import CacheSettings, DatabaseSettings, FunctionSettings
from such_market.db import watchdog
from such_market.db.connection import get_connection
from such_market.db.migrations import REQUIRED_SCHEMA_VERSION, schema_version
from such_market.observability import logger

DATABASE_CHECK_SECONDS = 2.0
"""The database check's bound (connect and query), as an uncached read's: a frozen server is reported
unavailable within it, whatever the invocation's deadline."""

Status = Literal["ok", "unavailable"]


class HealthSettings(FunctionSettings):
    """Settings of the health function: it needs the database and the cache."""

    database: DatabaseSettings
    cache: CacheSettings


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    status: Status
    latency_ms: float
    schema_version: str | None
    required_schema_version: str
    migrations_current: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CacheHealth:
    status: Status
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    database: DatabaseHealth
    cache: CacheHealth

    @property
    def healthy(self) -> bool:
        return self.database.status == "ok" and self.database.migrations_current and self.cache.status == "ok"

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.healthy else "unavailable",
            "database": _camel(asdict(self.database)),
            "cache": _camel(asdict(self.cache)),
        }


def _camel(values: dict[str, object]) -> dict[str, object]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(key): value for key, value in values.items()}


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def check_database(settings: DatabaseSettings) -> DatabaseHealth:
    """Connect (or reuse the container's connection) and read the applied schema version."""
    import psycopg

    started = time.perf_counter()
    try:
        # A probe answers fast: a frozen server is "unavailable" within the uncached reads' bound.
        with deadline.database_within(DATABASE_CHECK_SECONDS):
            conn = get_connection(settings)
            watchdog.guard(conn)
            version = schema_version(conn)
    except (psycopg.Error, OSError) as error:
        logger.warning("database health check failed", extra={"error_type": type(error).__name__})
        return DatabaseHealth("unavailable", _elapsed_ms(started), None, REQUIRED_SCHEMA_VERSION, False, "unreachable")
    current = version is not None and version >= REQUIRED_SCHEMA_VERSION
    return DatabaseHealth(
        "ok",
        _elapsed_ms(started),
        version,
        REQUIRED_SCHEMA_VERSION,
        current,
        None if current else "not migrated",
    )


def check_cache(settings: CacheSettings) -> CacheHealth:
    """PING the cache within the configured socket timeouts."""
    from such_market.cache.client import cache_errors

    started = time.perf_counter()
    try:
        get_client(settings).ping()
    except cache_errors() as error:
        logger.warning("cache health check failed", extra={"error_type": type(error).__name__})
        return CacheHealth("unavailable", _elapsed_ms(started), "unreachable")
    return CacheHealth("ok", _elapsed_ms(started))


def check_health(*, database: DatabaseSettings, cache: CacheSettings) -> HealthReport:
    """Both checks; the report says whether the service can answer requests."""
    return HealthReport(database=check_database(database), cache=check_cache(cache))
