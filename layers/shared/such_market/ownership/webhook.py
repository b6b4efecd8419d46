"""The Alchemy NFT-activity webhook (``POST /api/webhooks/alchemy``): signature, payload, use case.

Order of business, so nothing unauthenticated is ever parsed:

1. the request's ``body``: the exact bytes Alchemy signed (``such_market.http.api.Request.body``);
2. ``verify_signature``: ``X-Alchemy-Signature`` must be the hex HMAC-SHA256 of those bytes under the
   webhook's signing key, compared in constant time — missing or wrong → 401 ``invalid_signature``;
3. ``parse_webhook``: only now is the body read as JSON; not JSON, or not the webhook's shape → 400;
4. ``receive_webhook``: the transfers go through ``apply_transfers`` (one transaction with their
   events, published right after commit);
5. read-your-writes: right after the commit, the keys the changes make stale are deleted here too (the
   keys of their ``ownership.changed`` events, by ``events.invalidation.invalidate_for``), so a client
   that reads after the 200 sees the change. The events' consumer stays the backstop: a failure to
   delete (the cache is down) is logged and never fails the delivery, which is committed already.

The payload (Alchemy's documented shape; fields we do not use are ignored)::

    {"webhookId": "wh_…", "id": "whevt_…", "createdAt": "…", "type": "NFT_ACTIVITY",
     "event": {"network": "BASE_MAINNET", "activity": [
        {"fromAddress": "0x…", "toAddress": "0x…", "contractAddress": "0x…", "blockNum": "0x…", "hash": "0x…",
         "category": "erc721" | "erc1155", "erc721TokenId": "0x1f",            # ERC-721
         "erc1155Metadata": [{"tokenId": "0x1", "value": "0x2"}, …],         # ERC-1155 (a batch: several)
         "log": {"address": "0x…", "blockNumber": "0x…", "blockHash": "0x…", "transactionHash": "0x…",
                 "logIndex": "0x…", "removed": false}}]}}

Token ids, amounts, block numbers and log indexes come as hex strings (decimal strings and numbers
are accepted too); ``tokenType`` is read when ``category`` is absent. An activity we cannot use (not an
NFT transfer, a field missing or out of range) is skipped and counted as ignored rather than failing the
delivery, which Alchemy would otherwise retry forever.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market.config import (
    CacheSettings,
    DatabaseSettings,
    EventSettings,
    FunctionSettings,
    SecretStr,
    SettingsPart,
    setting,
)
from such_market.errors import BadRequestError, UnauthorizedError
from such_market.observability import logger
from such_market.ownership.transfers import OwnershipChanges, TokenType, Transfer, apply_transfers
from such_market.secrets import SECRET_REFERENCE_PATTERN, has_secret_source, resolve_secret
from such_market.validation import MAX_UINT256, reject_control_characters

if TYPE_CHECKING:
    import psycopg

    from such_market.cache.store import ReadThroughCache
    from such_market.events.publisher import EventPublisher

SIGNATURE_HEADER: Final = "x-alchemy-signature"
NFT_ACTIVITY: Final = "NFT_ACTIVITY"
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
"""Larger bodies are refused (400) after the signature check; Alchemy's deliveries are far smaller."""


class WebhookSigningSettings(SettingsPart):
    """The webhook's signing key: plain locally, a Secrets Manager/SSM reference in AWS."""

    alchemy_webhook_signing_key: SecretStr | None = None
    alchemy_webhook_signing_key_secret_arn: str | None = setting(None, pattern=SECRET_REFERENCE_PATTERN)

    def validate(self) -> None:
        if not has_secret_source(self.alchemy_webhook_signing_key, self.alchemy_webhook_signing_key_secret_arn):
            raise ValueError("set ALCHEMY_WEBHOOK_SIGNING_KEY or ALCHEMY_WEBHOOK_SIGNING_KEY_SECRET_ARN")

    def resolve_signing_key(self) -> str:
        """The signing key itself: the plain variable, else the secret it references (cached per container)."""
        return resolve_secret(
            self.alchemy_webhook_signing_key,
            self.alchemy_webhook_signing_key_secret_arn,
            variable="ALCHEMY_WEBHOOK_SIGNING_KEY",
        )


class AlchemyWebhookSettings(FunctionSettings):
    """Settings of the webhook function: the database, the cache (read-your-writes), the bus and the
    signing key."""

    database: DatabaseSettings
    cache: CacheSettings
    events: EventSettings
    signing: WebhookSigningSettings


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """A delivery: its id, the transfers it reports, and how many activities could not be used."""

    event_id: str
    transfers: tuple[Transfer, ...]
    skipped: int


# --------------------------------------------------------------------------------------------------
# Signature


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == wanted:
            return value
    return None


def signature(body: bytes, key: str) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``key``: what Alchemy sends in ``X-Alchemy-Signature``."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, presented: str | None, key: str) -> None:
    """Raise ``UnauthorizedError`` (401, ``invalid_signature``) unless ``presented`` signs ``body``."""
    expected = signature(body, key)
    candidate = (presented or "").strip().lower()
    if not hmac.compare_digest(expected.encode(), candidate.encode()):
        raise UnauthorizedError("missing or invalid webhook signature", code="invalid_signature")


# --------------------------------------------------------------------------------------------------
# Payload


def _int(value: object, *, maximum: int) -> int:
    """A non-negative integer given as a number, a decimal string or a 0x hex string."""
    if isinstance(value, bool):
        raise ValueError("not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value[:2].lower() == "0x" and 2 < len(value) <= 66:
        number = int(value[2:], 16)
    elif isinstance(value, str) and value.isdigit() and len(value) <= 78:
        number = int(value)
    else:
        raise ValueError("not an integer")
    if not 0 <= number <= maximum:
        raise ValueError("out of range")
    return number


_TOKEN_TYPES: Final[Mapping[str, TokenType]] = {"ERC721": "ERC721", "ERC1155": "ERC1155"}


def _token_type(activity: Mapping[str, Any]) -> TokenType | None:
    """``category`` (``erc721``/``erc1155``) or ``tokenType``, as a token type (None when neither says)."""
    return _TOKEN_TYPES.get(str(activity.get("category") or activity.get("tokenType") or "").upper().replace("-", ""))


def _activity_transfers(activity: object, event_id: str) -> list[Transfer]:
    """The transfers of one activity (ValueError when it is not a usable NFT transfer)."""
    if not isinstance(activity, Mapping):
        raise ValueError("an activity is not an object")
    log = activity.get("log")
    log = log if isinstance(log, Mapping) else {}
    kind = _token_type(activity)
    common: dict[str, Any] = {
        "contract": activity.get("contractAddress") or log.get("address"),
        "from_address": activity.get("fromAddress"),
        "to_address": activity.get("toAddress"),
        "block_number": _int(log.get("blockNumber", activity.get("blockNum")), maximum=2**63 - 1),
        "tx_hash": log.get("transactionHash") or activity.get("hash"),
        "log_index": _int(log.get("logIndex"), maximum=2**31 - 1),
        "removed": log.get("removed") is True,
        "block_hash": log.get("blockHash") or None,
        "event_id": event_id,
    }
    for name in ("contract", "from_address", "to_address", "tx_hash"):
        if not isinstance(common[name], str):
            raise ValueError(f"{name} is missing")
    if common["block_hash"] is not None and not isinstance(common["block_hash"], str):
        raise ValueError("blockHash is not a string")
    batch = activity.get("erc1155Metadata")
    if isinstance(batch, list) and batch:
        transfers = []
        for index, item in enumerate(batch):
            if not isinstance(item, Mapping):
                raise ValueError("an erc1155Metadata entry is not an object")
            transfers.append(
                Transfer(
                    **common,
                    token_id=_int(item.get("tokenId"), maximum=MAX_UINT256),
                    amount=_int(item.get("value"), maximum=MAX_UINT256),
                    batch_index=index,
                    token_type=kind or "ERC1155",
                )
            )
        return transfers
    token = activity.get("erc721TokenId")
    if token is None:
        raise ValueError("neither erc721TokenId nor erc1155Metadata")
    return [Transfer(**common, token_id=_int(token, maximum=MAX_UINT256), amount=1, token_type=kind or "ERC721")]


def parse_webhook(body: bytes) -> ParsedWebhook:
    """Parse a (verified) delivery. ``BadRequestError`` (400) when the body is not JSON or not a webhook;
    unusable activities are skipped and counted."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequestError("the webhook body is too large", code="invalid_body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequestError("the webhook body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise BadRequestError("the webhook body is not a JSON object", code="invalid_payload")
    event_id = payload.get("id")
    event = payload.get("event")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 200 or not isinstance(event, dict):
        raise BadRequestError("the webhook body lacks id or event", code="invalid_payload")
    # The id is stored with every transfer; the activities' strings that are stored are checked by format.
    reject_control_characters(event_id, field="webhook id", code="invalid_payload")
    activities = event.get("activity")
    if not isinstance(activities, list):
        raise BadRequestError("the webhook event lacks its activity list", code="invalid_payload")
    if payload.get("type") != NFT_ACTIVITY:
        return ParsedWebhook(event_id=event_id, transfers=(), skipped=len(activities))
    transfers: list[Transfer] = []
    skipped = 0
    for activity in activities:
        try:
            transfers.extend(_activity_transfers(activity, event_id))
        except ValueError:
            skipped += 1
    return ParsedWebhook(event_id=event_id, transfers=tuple(transfers), skipped=skipped)


# --------------------------------------------------------------------------------------------------
# Use case


def receive_webhook(
    *,
    connect: Callable[[], psycopg.Connection[tuple[Any, ...]]],
    cache: Callable[[], ReadThroughCache],
    publisher: EventPublisher,
    signing_key: str,
    body: bytes,
    headers: Mapping[str, str] | None,
) -> dict[str, int]:
    """Verify, parse and apply one delivery; returns the body of the 200 answer (``WebhookReceiptBody``).

    ``connect`` and ``cache`` are called only once the signature and the payload are valid, so
    unauthenticated or malformed requests never open a connection."""
    verify_signature(body, header(headers, SIGNATURE_HEADER), signing_key)
    parsed = parse_webhook(body)
    receipt = {"received": len(parsed.transfers) + parsed.skipped, "applied": 0, "reversed": 0, "stale": 0}
    if not parsed.transfers:
        return receipt | {"duplicates": 0, "ignored": parsed.skipped}
    conn = connect()
    result = apply_transfers(conn=conn, transfers=parsed.transfers, publisher=publisher)
    _invalidate_committed(cache, conn, result.changes)
    return receipt | {
        "applied": result.applied,
        "reversed": result.reversed,
        "stale": result.stale,
        "duplicates": result.duplicates,
        "ignored": result.ignored + parsed.skipped,
    }


def _invalidate_committed(
    cache: Callable[[], ReadThroughCache], conn: psycopg.Connection[tuple[Any, ...]], changes: OwnershipChanges
) -> None:
    """Delete now what the committed ``changes`` make stale: the keys their ``ownership.changed`` events
    name, as the invalidator deletes them (``cache.staleness``). Never raises: the events' consumer does
    the same when this fails."""
    from such_market.cache.staleness import invalidate_ownership
    from such_market.users.wallets import fids_owning

    if not changes.tokens:
        return
    try:
        store = cache()
        for contract in sorted(changes.tokens):
            invalidate_ownership(
                store,
                address=contract,
                token_ids=changes.tokens[contract],
                wallets=changes.wallets.get(contract, ()),
                fids_owning=lambda wallets: fids_owning(conn=conn, wallets=wallets),
            )
    except Exception as error:  # committed already: the events are the backstop, the delivery succeeded
        logger.warning(
            "could not invalidate after the webhook; its events will", extra={"error_type": type(error).__name__}
        )
