"""The one map from failures to API errors, applied at the edge (the router) and nowhere else.

Use cases let infrastructure failures propagate as they are; ``api_error_for`` says what each means to
a client:

    ApiError                              itself (raised on purpose, already an answer)
    psycopg OperationalError/QueryCanceled 503, Retry-After 5 ("the database is unavailable")
    redis / socket errors                 503, Retry-After 5 ("the cache is unavailable")
    UpstreamRateLimited                   503, its Retry-After (or 10)
    UpstreamUnavailable                   503, Retry-After 10
    UpstreamCredentialsRejected           502 ``upstream_credentials_rejected`` (a configuration fault)
    any other UpstreamError               502 ``upstream_error``
    anything else                         ``None``: a bug, answered as a generic 500

Every 503 has the code ``service_unavailable`` (what a client does is the same: wait Retry-After);
502s have their own codes. Messages name the kind of source (database, cache, the NFT or Farcaster data
provider), never its text. ``source_unavailable`` is the same classification for the cache front, which
serves a kept value (``STALE``) instead of a 503. The modules of psycopg and redis are looked at only
when already imported, so this costs the cold start nothing.
"""

from __future__ import annotations

import sys

from such_market.errors import ApiError, BadGatewayError, ServiceUnavailableError
from such_market.upstream.errors import (
    UpstreamCredentialsRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)

DATABASE_RETRY_AFTER_SECONDS = 5
CACHE_RETRY_AFTER_SECONDS = 5
UPSTREAM_RETRY_AFTER_SECONDS = 10

_PROVIDERS = {"Alchemy": "the NFT data provider", "Neynar": "the Farcaster data provider"}


def _provider(error: UpstreamError) -> str:
    return _PROVIDERS.get(error.upstream, "an upstream provider")


def _is_database_unavailable(error: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.errors.QueryCanceled)


def _is_cache_unavailable(error: BaseException) -> bool:
    redis_exceptions = sys.modules.get("redis.exceptions")
    if redis_exceptions is None:
        return False
    return isinstance(error, redis_exceptions.RedisError | redis_exceptions.RedisClusterException)


def _upstream_error(error: UpstreamError) -> ApiError:
    provider = _provider(error)
    if isinstance(error, UpstreamRateLimited):
        retry_after = int(error.retry_after or UPSTREAM_RETRY_AFTER_SECONDS)
        return ServiceUnavailableError(f"{provider} is rate limiting us", retry_after=max(1, retry_after))
    if isinstance(error, UpstreamUnavailable):
        return ServiceUnavailableError(f"{provider} is unavailable", retry_after=UPSTREAM_RETRY_AFTER_SECONDS)
    if isinstance(error, UpstreamCredentialsRejected):
        return BadGatewayError(f"{provider} refused our credentials", code="upstream_credentials_rejected")
    return BadGatewayError(f"{provider} failed", code="upstream_error")


def public_upstream_failure(error: UpstreamError) -> str:
    """What a public answer may say about ``error`` (e.g. a failed ingestion's state): the kind of
    provider and the HTTP status it answered, never its text, which goes to the logs only."""
    status = f" (HTTP {error.status})" if error.status is not None else ""
    return f"{_provider(error)} failed{status}"


def api_error_for(error: BaseException) -> ApiError | None:
    """The API error ``error`` stands for, or ``None`` when it is a bug (see the module doc)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UpstreamError):
        return _upstream_error(error)
    if _is_database_unavailable(error):
        return ServiceUnavailableError(
            "the database is unavailable, try again shortly", retry_after=DATABASE_RETRY_AFTER_SECONDS
        )
    if _is_cache_unavailable(error) or isinstance(error, ConnectionError | TimeoutError):
        return ServiceUnavailableError(
            "the cache is unavailable, try again shortly", retry_after=CACHE_RETRY_AFTER_SECONDS
        )
    return None


def source_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "no source can answer right now" (a 503), so a kept value may be served."""
    return isinstance(api_error_for(error), ServiceUnavailableError)
