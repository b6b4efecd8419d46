"""One PostgreSQL connection per container, opened lazily and re-opened when it breaks.

Lambda runs one request at a time per container, so a single connection (multiplexed by RDS Proxy in
AWS) is both the fastest and the simplest choice. The DSN comes from ``DATABASE_URL`` locally or from
the RDS credentials secret named by ``DB_SECRET_ARN``. Connections use autocommit; code that writes
opens an explicit ``conn.transaction()`` block so a change and its outbox event commit together.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from such_market.config import DatabaseSettings
from such_market.errors import ConfigurationError
from such_market.secrets import get_secret_json

if TYPE_CHECKING:
    import psycopg

_lock = threading.Lock()
_connections: dict[str, psycopg.Connection[tuple[object, ...]]] = {}


def resolve_dsn(settings: DatabaseSettings) -> str:
    """Return the DSN from ``DATABASE_URL`` or build it from the RDS secret."""
    if settings.database_url:
        return settings.database_url
    if not settings.db_secret_arn:
        raise ConfigurationError("set DATABASE_URL or DB_SECRET_ARN")
    secret = get_secret_json(settings.db_secret_arn)
    host = settings.db_host_override or str(secret["host"])
    user = quote(str(secret["username"]), safe="")
    password = quote(str(secret["password"]), safe="")
    port = int(secret.get("port", 5432))
    dbname = quote(str(secret.get("dbname", "postgres")), safe="")
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}?sslmode=require"


def connect(settings: DatabaseSettings, *, dsn: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    """Open a new autocommit connection with the configured connect and statement timeouts."""
    import psycopg

    return psycopg.connect(
        dsn or resolve_dsn(settings),
        autocommit=True,
        connect_timeout=settings.db_connect_timeout_seconds,
        options=f"-c statement_timeout={settings.db_statement_timeout_ms}",
        application_name=settings.powertools_service_name,
    )


def get_connection(settings: DatabaseSettings) -> psycopg.Connection[tuple[object, ...]]:
    """Return the container's connection, re-opening it if it was closed or broke."""
    key = settings.database_url or settings.db_secret_arn or ""
    with _lock:
        conn = _connections.get(key)
        if conn is None or conn.closed or conn.broken:
            conn = connect(settings)
            _connections[key] = conn
        return conn


def close_connections() -> None:
    """Close every cached connection (used by tests and by the local runtime on shutdown)."""
    with _lock:
        for conn in _connections.values():
            conn.close()
        _connections.clear()
