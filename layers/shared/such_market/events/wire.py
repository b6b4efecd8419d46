"""Events as the outbox and the publisher see them: a detail type, an ``eventId``, a time and the wire JSON.

``such_market.events.models.Event`` (a validated pydantic detail) is the usual kind. ``WireEvent`` is an
event whose detail is already in its wire form: for a producer on a cold path that must not pay for
pydantic and every model of the bus (about 0.15 s of a cold start) to record or publish a small,
fixed-shape event: ``cache.cleared`` from the cache-clear function, ``user.updated`` from the functions
that learn a Farcaster user, the collection events of a refresh, a first sight and the retry sweep, and
the ownership events of the Alchemy webhook (``nft.transferred``, ``ownership.changed``). Each builder
checks what the model would (``ValueError``), and the tests compare what it builds with the model's
event, byte for byte, so the schema stays the models' one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from such_market.errors import InvalidEventError
from such_market.validation import normalize_address, normalize_uint256

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SCHEMA_VERSION: Final = 1
MAX_LIST_ITEMS: Final = 1000
"""Upper bound of the id/wallet lists of one event: keeps every entry far below EventBridge's 256 KiB."""


class PublishableEvent(Protocol):
    """What the outbox (``enqueue``) and ``EventPublisher.publish`` (``put_events_entry``) need of an event."""

    @property
    def event_id(self) -> str: ...

    @property
    def detail_type(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...

    def detail_json(self) -> bytes:
        """The detail's wire form (camelCase, RFC 3339 UTC times), as stored and as published."""
        ...


@dataclass(frozen=True, slots=True)
class WireEvent:
    """An event of ``detail_type`` whose detail is given as its wire fields (camelCase, JSON values).

    ``eventId``, ``occurredAt`` (now, UTC) and ``schemaVersion`` are added as every detail carries them.
    """

    detail_type: str
    fields: dict[str, Any]
    event_id: str
    occurred_at: datetime

    @classmethod
    def new(cls, detail_type: str, fields: dict[str, Any]) -> WireEvent:
        """A new event (a fresh ``eventId``, occurring now)."""
        return cls(detail_type, dict(fields), str(uuid.uuid4()), datetime.now(UTC))

    @property
    def detail(self) -> dict[str, Any]:
        """The detail as published: the common fields, then this event's own."""
        return {
            "eventId": self.event_id,
            "occurredAt": self.occurred_at,
            "schemaVersion": SCHEMA_VERSION,
            **self.fields,
        }

    def detail_json(self) -> bytes:
        """The detail's wire form (``occurredAt`` as RFC 3339 UTC with ``Z``, as the models write it)."""
        return orjson.dumps(self.detail, option=orjson.OPT_UTC_Z)


def check_addresses(values: Sequence[object]) -> list[str]:
    """``values`` as the models hold an address list: each address lower-cased, at most ``MAX_LIST_ITEMS``.

    Raises ``ValueError`` naming the first bad item, as the model's validation would refuse it.
    """
    if len(values) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} addresses in one event, got {len(values)}")
    addresses = []
    for index, value in enumerate(values):
        try:
            addresses.append(normalize_address(value))
        except ValueError as error:
            raise ValueError(f"address {index} ({value!r}): {error}") from None
    return addresses


def put_events_entry(event: PublishableEvent, bus_name: str, source: str) -> PutEventsRequestEntryTypeDef:
    """The ``PutEvents`` entry that publishes ``event`` (of any kind) on ``bus_name``."""
    return {
        "EventBusName": bus_name,
        "Source": source,
        "DetailType": event.detail_type,
        "Detail": event.detail_json().decode(),
        "Time": event.occurred_at,
    }


MAX_LABEL_LENGTH: Final = 200
"""A ``reason`` (or ``by``) label's limit, as the models' ``Label``."""
TX_HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")
"""A transaction hash as the events accept it (any case; lower-cased on the way in)."""


def ingest_requested(contract_address: str, reason: str) -> WireEvent:
    """``collection.ingest_requested`` of ``contract_address`` for ``reason``."""
    return _collection_event("collection.ingest_requested", contract_address, reason)


def collection_updated(contract_address: str, reason: str) -> WireEvent:
    """``collection.updated`` of ``contract_address`` for ``reason``."""
    return _collection_event("collection.updated", contract_address, reason)


def _collection_event(detail_type: str, contract_address: str, reason: str) -> WireEvent:
    """A collection's event, checked as the models check it (``ValueError``): the address lower-cased, the
    reason 1 to ``MAX_LABEL_LENGTH`` characters."""
    if not 1 <= len(reason) <= MAX_LABEL_LENGTH:
        raise ValueError(f"reason must have 1 to {MAX_LABEL_LENGTH} characters")
    return WireEvent.new(detail_type, {"contractAddress": normalize_address(contract_address), "reason": reason})


def nft_transferred(
    *,
    contract_address: str,
    token_id: int,
    from_address: str,
    to_address: str,
    amount: int,
    block_number: int,
    tx_hash: str,
    log_index: int,
    removed: bool,
) -> WireEvent:
    """``nft.transferred``, checked as ``models.NftTransferred`` checks it (``ValueError``): addresses and
    the hash lower-cased, the token id and amount decimal strings within uint256, block and log index ≥ 0."""
    if not isinstance(tx_hash, str) or not TX_HASH.fullmatch(tx_hash):
        raise ValueError("tx_hash must be 0x followed by 64 hexadecimal digits")
    if _negative_or_not_int(block_number) or _negative_or_not_int(log_index):
        raise ValueError("block_number and log_index must be non-negative integers")
    fields = {
        "contractAddress": normalize_address(contract_address),
        "tokenId": normalize_uint256(token_id),
        "from": normalize_address(from_address),
        "to": normalize_address(to_address),
        "amount": normalize_uint256(amount),
        "blockNumber": block_number,
        "txHash": tx_hash.lower(),
        "logIndex": log_index,
        "removed": bool(removed),
    }
    return WireEvent.new("nft.transferred", fields)


def ownership_changed(contract_address: str, token_ids: Sequence[int], wallets: Sequence[str]) -> WireEvent:
    """``ownership.changed``, checked as ``models.OwnershipChanged`` checks it (``ValueError``): each list at
    most ``MAX_LIST_ITEMS``, token ids decimal strings within uint256, addresses lower-cased."""
    if len(token_ids) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} token ids in one event, got {len(token_ids)}")
    fields = {
        "contractAddress": normalize_address(contract_address),
        "tokenIds": [normalize_uint256(token_id) for token_id in token_ids],
        "wallets": check_addresses(wallets),
    }
    return WireEvent.new("ownership.changed", fields)


def ownership_changes(contract_address: str, token_ids: Sequence[int], wallets: Sequence[str]) -> list[WireEvent]:
    """``ownership.changed`` of ``contract_address`` for ``token_ids`` and ``wallets``, split so that no list
    exceeds ``MAX_LIST_ITEMS`` (none when both are empty): what every producer of the event publishes."""
    return [
        ownership_changed(
            contract_address, token_ids[start : start + MAX_LIST_ITEMS], wallets[start : start + MAX_LIST_ITEMS]
        )
        for start in range(0, max(len(token_ids), len(wallets)), MAX_LIST_ITEMS)
    ]


def _negative_or_not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < 0


_COMMON_FIELDS: Final = ("eventId", "occurredAt", "schemaVersion")


def require_common_fields(detail_type: str, detail: Mapping[str, Any]) -> None:
    """``InvalidEventError`` unless ``detail`` names the fields every detail carries (a producer always sends
    them: a generated ``eventId`` would defeat the consumers' idempotency)."""
    missing = [name for name in _COMMON_FIELDS if name not in detail]
    if missing:
        raise InvalidEventError(f"the {detail_type} detail lacks {', '.join(missing)}")


def read_common(detail_type: str, detail: Mapping[str, Any]) -> str:
    """Check the fields every detail carries, as ``models.parse_detail`` reads them or more strictly (never
    accepting what it refuses): ``eventId`` a UUID, ``occurredAt`` an RFC 3339 time with its offset,
    ``schemaVersion`` 1. Returns the event id; ``InvalidEventError`` otherwise. For a consumer that reads its
    detail in wire form (``EventConsumer.on_wire``)."""
    require_common_fields(detail_type, detail)
    raw_id, occurred_at, version = (detail[name] for name in _COMMON_FIELDS)
    try:
        event_id = str(uuid.UUID(raw_id)) if isinstance(raw_id, str) else None
    except ValueError:
        event_id = None
    if event_id is None:
        raise InvalidEventError(f"{detail_type} eventId: must be a UUID string")
    try:
        when = datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidEventError(f"{detail_type} occurredAt: must be a time with its UTC offset")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise InvalidEventError(f"{detail_type} schemaVersion: must be {SCHEMA_VERSION}")
    return event_id
