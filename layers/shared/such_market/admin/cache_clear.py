"""``POST /api/admin/cache/clear``: delete cache keys by scope, then announce it with ``cache.cleared``.

``{scope: "all"}``, ``{scope: "collection", contractAddress}``, ``{scope: "wallet", walletAddress}`` or
``{scope: "user", fid}`` → ``{success: true, keysDeleted}``. The body is validated strictly: an unknown
scope, a missing or malformed field, or any field the scope does not use is a 400. What each scope
deletes, why it never touches durable state, never stalls other clients and lets no earlier fill
store a stale value afterwards: ``such_market.cache.clearing``. Nothing changes in PostgreSQL, so the
event needs no outbox: it is published after the clear, and a failed publish is logged, not raised
(the clear itself succeeded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from such_market.cache import clearing
from such_market.config import AdminSettings, CacheSettings, EventSettings, FunctionSettings
from such_market.errors import BadRequestError
from such_market.events.wire import WireEvent
from such_market.observability import logger
from such_market.validation import parse_address, parse_fid, parse_json_object

if TYPE_CHECKING:
    from such_market.cache.store import ReadThroughCache
    from such_market.events.publisher import EventPublisher

Scope = Literal["all", "collection", "wallet", "user"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
FIELDS: Final[dict[Scope, str | None]] = {
    "all": None,
    "collection": "contractAddress",
    "wallet": "walletAddress",
    "user": "fid",
}
"""The one field each scope requires (and the only one it accepts besides ``scope``)."""
MAX_BODY_BYTES: Final = 1024
CLEARED_BY: Final = "admin"
"""``cache.cleared``'s ``by``: the admin credential is a single shared token, so it names no person."""


class CacheClearSettings(FunctionSettings):
    """Settings of the cache-clear admin function: the cache, the bus and the admin token."""

    cache: CacheSettings
    events: EventSettings
    admin: AdminSettings


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """A validated request: the scope and its one argument (an address or a fid)."""

    scope: Scope
    contract_address: str | None = None
    wallet_address: str | None = None
    fid: int | None = None


def parse_clear_request(body: str | bytes | None) -> ClearRequest:
    """The JSON body → ``ClearRequest``; ``BadRequestError`` (400) for anything else."""
    payload = parse_json_object(body, max_bytes=MAX_BODY_BYTES, shape="{scope, contractAddress?, walletAddress?, fid?}")
    scope = payload.get("scope")
    if scope not in SCOPES:
        raise BadRequestError(f"invalid scope: expected one of {', '.join(SCOPES)}", code="invalid_scope")
    needed = FIELDS[scope]
    extra = sorted(set(payload) - {"scope", needed})
    if extra:
        raise BadRequestError(f"scope {scope} does not take {', '.join(extra)}", code="invalid_body")
    if needed is not None and needed not in payload:
        raise BadRequestError(f"scope {scope} requires {needed}", code="invalid_body")
    value = payload.get(needed) if needed is not None else None
    match scope:
        case "collection":
            return ClearRequest(scope, contract_address=parse_address(_text(value, "contractAddress")))
        case "wallet":
            return ClearRequest(
                scope, wallet_address=parse_address(_text(value, "walletAddress"), field="walletAddress")
            )
        case "user":
            # JSON has one number type: 7.0 is the integer 7 (as JSON Schema's "integer" says)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequestError("invalid fid: expected a positive integer", code="invalid_fid")
            return ClearRequest(scope, fid=parse_fid(str(value)))
    return ClearRequest(scope)


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequestError(f"invalid {field}: expected a string", code="invalid_address")
    return value


def cache_cleared(scope: Scope) -> WireEvent:
    """``cache.cleared`` for ``scope``, built without the bus's pydantic models (``such_market.events.wire``):
    its shape is ``models.CacheCleared``'s, which the tests check."""
    return WireEvent.new("cache.cleared", {"scope": scope, "by": CLEARED_BY})


def clear_cache(
    *, request: ClearRequest, cache: ReadThroughCache, publisher: Callable[[], EventPublisher]
) -> dict[str, object]:
    """Clear ``request``'s scope and publish ``cache.cleared``; the answer is ``{success, keysDeleted}``."""
    match request:
        case ClearRequest(scope="all"):
            deleted = clearing.clear_all(cache)
        case ClearRequest(scope="collection", contract_address=str(address)):
            deleted = clearing.clear_collection(cache, address)
        case ClearRequest(scope="wallet", wallet_address=str(wallet)):
            deleted = clearing.clear_wallet(cache, wallet)
        case ClearRequest(scope="user", fid=int(fid)):
            deleted = clearing.clear_user(cache, fid)
        case _:
            raise ValueError(f"not a request parse_clear_request makes: {request}")
    event = cache_cleared(request.scope)
    result = publisher().publish([event])
    if not result.ok:
        logger.warning(
            "cache cleared, but cache.cleared was not published",
            extra={"scope": request.scope, "event_id": event.event_id, "errors": dict(result.failed)},
        )
    return {"success": True, "keysDeleted": deleted}
