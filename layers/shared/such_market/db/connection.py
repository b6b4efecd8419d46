"""One PostgreSQL connection per container thread, opened lazily and re-opened when it breaks.

Lambda runs one request at a time per container, on one thread, so this is a single connection
(multiplexed by RDS Proxy in AWS): the fastest and the simplest choice. Where one process serves
several requests at once (the local runtime, tests with threads), each thread gets its own, so one
request's open transaction is never shared with another's; when the thread ends, its connection goes to
the next new thread if it is idle and usable, or is closed (``such_market.container``), so a process
holds about as many connections as it runs threads at once, however many threads it starts. The DSN
comes from ``DATABASE_URL`` locally or from the RDS credentials secret named by ``DB_SECRET_ARN``.
Connections use autocommit; code that writes opens an explicit ``conn.transaction()`` block so a change
and its outbox event commit together.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from such_market import deadline
from such_market.config import DatabaseSettings
from such_market.container import per_container
from such_market.errors import ConfigurationError
from such_market.secrets import get_secret_json

if TYPE_CHECKING:
    import psycopg

MIN_CONNECT_TIMEOUT_SECONDS = 2  # libpq's own minimum
APPLICATION_NAME = "such-market"
"""How our sessions name themselves in ``pg_stat_activity``."""


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
    """Open a new autocommit connection with the configured connect and statement timeouts.

    The connect timeout is cut to the current database bound (``deadline.database_remaining()``), and
    GSSAPI encryption is not negotiated: each negotiation libpq tries (GSS, then SSL, then plain) waits the
    whole timeout on a server that does not answer, which tripled a connect to a frozen server. psycopg
    counts the timeout in whole seconds, at least 2: a shorter bound waits for the connect on a helper
    thread (``_connect_within``).
    """
    import psycopg

    timeout = settings.db_connect_timeout_seconds
    left = deadline.database_remaining()
    if left is not None:
        timeout = max(MIN_CONNECT_TIMEOUT_SECONDS, min(timeout, math.floor(left)))

    def open_connection() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            dsn or resolve_dsn(settings),
            autocommit=True,
            connect_timeout=timeout,
            gssencmode="disable",
            options=f"-c statement_timeout={settings.db_statement_timeout_ms}",
            application_name=APPLICATION_NAME,
        )

    if left is not None and left < timeout:
        return _connect_within(left, open_connection)
    return open_connection()


def _connect_within(
    seconds: float, open_connection: Callable[[], psycopg.Connection[tuple[object, ...]]]
) -> psycopg.Connection[tuple[object, ...]]:
    """``open_connection()`` on a helper thread, waited for ``seconds``; then ``ConnectionTimeout``, and
    the helper closes the connection if it comes later (it gives up by itself at psycopg's timeout)."""
    import psycopg

    lock = threading.Lock()
    finished = threading.Event()
    outcome: list[psycopg.Connection[tuple[object, ...]] | Exception] = []
    abandoned = False

    def attempt() -> None:
        try:
            result: psycopg.Connection[tuple[object, ...]] | Exception = open_connection()
        except Exception as error:  # handed to the caller, who raises it
            result = error
        with lock:
            late = abandoned
            if not late:
                outcome.append(result)
        if late and not isinstance(result, Exception):
            result.close()
        finished.set()

    threading.Thread(target=attempt, name="db-connect", daemon=True).start()
    finished.wait(seconds)
    with lock:
        if not outcome:
            abandoned = True
            raise psycopg.errors.ConnectionTimeout("connection timeout expired (the database bound)")
    result = outcome[0]
    if isinstance(result, Exception):
        raise result
    return result


def _usable(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return not conn.closed and not conn.broken


def _idle(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether an ended thread's connection may serve another thread: usable and outside any transaction."""
    from psycopg.pq import TransactionStatus

    return _usable(conn) and conn.info.transaction_status == TransactionStatus.IDLE


@per_container(close=lambda conn: conn.close(), reuse=_usable, per_thread=True, handover=_idle)
def get_connection(settings: DatabaseSettings) -> psycopg.Connection[tuple[object, ...]]:
    """This thread's connection for ``settings``, re-opened when it was closed or broke."""
    return connect(settings)


def set_local_statement_timeout(*, conn: psycopg.Connection[tuple[object, ...]], milliseconds: int) -> None:
    """Raise or lower the statement timeout until the end of the current transaction."""
    from psycopg import sql

    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(milliseconds))))
