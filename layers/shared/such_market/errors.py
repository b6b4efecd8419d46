"""The exception tree of the backend, grouped by what the caller can do about it.

    SuchMarketError                  base of everything we raise on purpose
    ├── ConfigurationError           a variable is missing or malformed: fix the deployment
    ├── ApiError                     maps to one HTTP response with the SPEC error shape
    │   ├── BadRequestError          400: the caller sent invalid input
    │   ├── UnauthorizedError        401: no admin credential
    │   ├── ForbiddenError           403: a credential that is not valid
    │   ├── NotFoundError            404: unknown entity
    │   ├── ConflictError            409: the request conflicts with current state
    │   ├── TooManyRequestsError     429: cooldown or rate limit; carries Retry-After
    │   ├── BadGatewayError          502: an upstream failed in a way retrying cannot fix
    │   └── ServiceUnavailableError  503: no source can answer; carries Retry-After
    └── EventPublishError            events could not be delivered; the outbox keeps them

Use cases raise ``ApiError``s for what the caller did (bad input, unknown entity, cooldown) and let
infrastructure failures (psycopg, redis, the upstream tree) propagate as they are; the router maps both
to responses in one place (``such_market.failures`` says which failure is which answer). ``error_body``
is the SPEC error shape, for answers that are cached (a 404) as well as raised.
"""

from __future__ import annotations

import orjson


class SuchMarketError(Exception):
    """Base class of every error raised on purpose by such-market code."""


class ConfigurationError(SuchMarketError):
    """The function's environment is missing a variable or holds a malformed one."""


class InvalidEventError(SuchMarketError, ValueError):
    """An event from the bus has an unknown detail type or a detail that fails its schema.

    Consumers let it propagate so the delivery fails and, after EventBridge's retries, lands in the DLQ.
    """


class EventPublishError(SuchMarketError):
    """Some events could not be published after bounded retries (they stay in the outbox)."""


class ApiError(SuchMarketError):
    """An error that becomes one HTTP response: ``{"error": message, "code": code}``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class BadRequestError(ApiError):
    """The request carries invalid input (address, token id, fid, page, filter, body)."""

    status = 400
    code = "bad_request"


class UnauthorizedError(ApiError):
    """An admin route was called without a bearer credential."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    """An admin route was called with a credential that is not valid."""

    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    """The entity the request names does not exist."""

    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The request conflicts with the current state of the entity."""

    status = 409
    code = "conflict"


class TooManyRequestsError(ApiError):
    """A cooldown or a rate limit is in force; ``retry_after`` says for how long."""

    status = 429
    code = "too_many_requests"


class BadGatewayError(ApiError):
    """An upstream failed in a way retrying cannot fix (it refuses our credentials, it answers nonsense)."""

    status = 502
    code = "bad_gateway"


class ServiceUnavailableError(ApiError):
    """Neither the cache nor the database (nor an upstream) can answer right now."""

    status = 503
    code = "service_unavailable"


def error_body(message: str, code: str) -> bytes:
    """The SPEC error shape as JSON bytes: ``{"error": message, "code": code}``."""
    return orjson.dumps({"error": message, "code": code})
