"""JSON responses in the SPEC shapes, built from pre-serialized bytes wherever possible.

Success bodies are orjson bytes (straight from the cache on a hit); errors are
``{"error": "<human message>", "code": "<machine_code>"}`` and never carry stack traces, SQL or
upstream bodies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aws_lambda_powertools.event_handler import Response

from such_market.errors import ApiError

if TYPE_CHECKING:
    from such_market.cache.store import Served

JSON = "application/json"


def json_response(status: int, body: object, *, headers: dict[str, str] | None = None) -> Response[str]:
    """A JSON response; ``body`` is either pre-serialized bytes or a value orjson can encode."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(status_code=status, content_type=JSON, body=raw.decode(), headers=headers)


def error_body(message: str, code: str) -> bytes:
    """The SPEC error shape as bytes."""
    return orjson.dumps({"error": message, "code": code})


def error_response(error: ApiError) -> Response[str]:
    """Map an ``ApiError`` to its response, adding ``Retry-After`` when it carries one."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error.status, error_body(error.message, error.code), headers=headers)


def internal_error_response() -> Response[str]:
    """The response for an unexpected failure: generic, without internals."""
    return json_response(500, error_body("internal error", "internal_error"))


def served_response(served: Served, *, headers: dict[str, str] | None = None) -> Response[str]:
    """The response of a cache-fronted read: its status and bytes as stored, plus ``X-Cache``."""
    return Response(
        status_code=served.entry.status,
        content_type=JSON,
        body=served.entry.body.decode(),
        headers={"X-Cache": served.cache, **headers} if headers else {"X-Cache": served.cache},
    )
