"""The container's Redis client, standalone or cluster mode, built from ``CacheSettings``.

Timeouts are short on purpose: a slow or absent cache must cost a request a few milliseconds, after
which callers fall back to PostgreSQL. ElastiCache Serverless speaks cluster mode (``REDIS_CLUSTER``).

The secret ``REDIS_AUTH_SECRET_ARN`` names is either ``{"username": …, "password": …}`` (an ElastiCache RBAC
user, which the stack creates: ``AUTH username password``) or a plain AUTH token (a password alone, the
``default`` user).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from such_market.config import CacheSettings
from such_market.container import per_container
from such_market.errors import ConfigurationError
from such_market.secrets import get_secret_string

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

    CacheClient = Redis | RedisCluster

CLUSTER_MAX_CONNECTIONS_PER_NODE = 256


def credentials(settings: CacheSettings) -> tuple[str | None, str | None]:
    """(username, password) of the cache from its AUTH secret; (None, None) without one."""
    if not settings.redis_auth_secret_arn:
        return None, None
    raw = get_secret_string(settings.redis_auth_secret_arn).strip()
    if not raw.startswith("{"):
        return None, raw
    try:
        stored = orjson.loads(raw)
    except orjson.JSONDecodeError:
        stored = None
    password = stored.get("password") if isinstance(stored, dict) else None
    username = stored.get("username") if isinstance(stored, dict) else None
    if not isinstance(password, str) or not password or not isinstance(username, str | None):
        # The message never quotes the secret.
        raise ConfigurationError('REDIS_AUTH_SECRET_ARN: the secret is neither a token nor {"username", "password"}')
    return username or None, password


def build_client(settings: CacheSettings) -> CacheClient:
    """Create a client for the configured cache. A standalone client holds one connection and opens it
    here (so a cache that is down raises here, a ``RedisError``); a cluster client connects on first use."""
    from redis import Redis, __version__
    from redis.cluster import RedisCluster
    from redis.driver_info import DriverInfo

    # The version CLIENT SETINFO reports, given: left to redis-py, every client reads it from the package's
    # metadata (importlib.metadata and the email parser: ~12 ms of a cold start's first answer).
    driver_info = DriverInfo(lib_version=__version__)
    connect_timeout = settings.cache_connect_timeout_ms / 1000
    socket_timeout = settings.cache_socket_timeout_ms / 1000
    username, password = credentials(settings)
    if settings.redis_cluster:
        # One connection per node suffices for a Lambda container; the bound only guards against leaks.
        cluster_options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "username": username,
            "password": password,
            "max_connections": CLUSTER_MAX_CONNECTIONS_PER_NODE,
            "driver_info": driver_info,
        }
        if settings.redis_url:
            return RedisCluster.from_url(settings.redis_url, **cluster_options)
        return RedisCluster(
            host=settings.redis_host or "localhost", port=settings.redis_port, ssl=settings.redis_tls, **cluster_options
        )
    if settings.redis_url:
        return Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            username=username,
            password=password,
            single_connection_client=True,
            driver_info=driver_info,
        )
    return Redis(
        host=settings.redis_host or "localhost",
        port=settings.redis_port,
        ssl=settings.redis_tls,
        username=username,
        password=password,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        single_connection_client=True,
        driver_info=driver_info,
    )


def preload() -> None:
    """Import redis-py now. A function whose settings hold a cache calls this at init (``api_handler``), so
    its first answer is one round trip rather than ~0.1 s of imports, and under SnapStart the snapshot holds
    the modules: a restored container never imports them. The total cold start is the same."""
    import encodings.idna  # noqa: F401 - the codec socket.getaddrinfo encodes a host name with (~2 ms)

    import redis.cluster  # noqa: F401 - imported for its side effect: the modules are loaded


@per_container(close=lambda client: client.close())
def get_client(settings: CacheSettings) -> CacheClient:
    """The container's cache client for ``settings`` (created once; connects on first command)."""
    return build_client(settings)


def cache_errors() -> tuple[type[BaseException], ...]:
    """Every exception that means "the cache cannot answer": redis-py's ``RedisError`` tree, the cluster
    client's ``RedisClusterException`` (not a ``RedisError``: raised when no node is reachable), and
    socket errors. Catch these, never a subset, so cluster mode degrades exactly like standalone."""
    from redis.exceptions import RedisClusterException, RedisError

    return (RedisError, RedisClusterException, OSError)
