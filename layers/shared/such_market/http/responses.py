"""JSON responses in the SPEC shapes, built from pre-serialized bytes wherever possible.

Success bodies are orjson bytes (straight from the cache on a hit); errors are
``{"error": "<human message>", "code": "<machine_code>"}`` and never carry stack traces, SQL or
upstream bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from such_market.errors import ApiError

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


def error_body(message: str, code: str) -> bytes:
    """The SPEC error shape as bytes."""
    return orjson.dumps({"error": message, "code": code})


def error_response(error: ApiError) -> Response:
    """Map an ``ApiError`` to its response, adding ``Retry-After`` when it carries one."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error.status, error_body(error.message, error.code), headers=headers)


def internal_error_response() -> Response:
    """The response for an unexpected failure: generic, without internals."""
    return json_response(500, error_body("internal error", "internal_error"))


def served_response(served: Served, *, headers: dict[str, str] | None = None) -> Response:
    """The response of a cache-fronted read: its status and bytes as stored, plus ``X-Cache``."""
    return Response(
        served.entry.status,
        served.entry.body,
        {"X-Cache": served.cache, **headers} if headers else {"X-Cache": served.cache},
    )
