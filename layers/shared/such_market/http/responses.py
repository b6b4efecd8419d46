"""JSON responses in the SPEC shapes, built from pre-serialized bytes wherever possible.

Success bodies are orjson bytes (straight from the cache on a hit); errors are
``{"error": "<human message>", "code": "<machine_code>"}`` and never carry stack traces, SQL or
upstream bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from such_market.errors import ApiError, error_body
from such_market.failures import api_error_for
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.store import Served

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response with a JSON body (text, decoded once from the stored bytes)."""

    status_code: int
    body: bytes
    headers: dict[str, str] | None = None

    def to_lambda(self) -> dict[str, Any]:
        """The HTTP API proxy response."""
        headers = {"Content-Type": JSON, **self.headers} if self.headers else {"Content-Type": JSON}
        return {
            "statusCode": self.status_code,
            "headers": headers,
            "body": self.body.decode(),
            "isBase64Encoded": False,
        }


def json_response(status: int, body: object, *, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; ``body`` is either pre-serialized bytes or a value orjson can encode."""
    return Response(status, body if isinstance(body, bytes) else orjson.dumps(body), headers)


def error_response(error: ApiError) -> Response:
    """Map an ``ApiError`` to its response, adding ``Retry-After`` when it carries one."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error.status, error_body(error.message, error.code), headers=headers)


def failure_response(error: BaseException) -> Response:
    """The response for any exception a route raised: its API error (``such_market.failures``), or a
    logged, generic 500 without internals for a bug."""
    api_error = api_error_for(error)
    if api_error is None:
        logger.exception("unhandled error", extra={"error_type": type(error).__name__})
        return json_response(500, error_body("internal error", "internal_error"))
    if api_error.status >= 500:
        logger.warning(
            "answered with a server-side failure",
            extra={"status": api_error.status, "code": api_error.code, "error_type": type(error).__name__},
        )
    return error_response(api_error)


def served_response(served: Served, *, headers: dict[str, str] | None = None) -> Response:
    """The response of a cache-fronted read: its status and bytes as stored, plus ``X-Cache``."""
    return Response(
        served.entry.status,
        served.entry.body,
        {"X-Cache": served.cache, **headers} if headers else {"X-Cache": served.cache},
    )
