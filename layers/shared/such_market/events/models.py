"""The schema of every event on the bus (SPEC §6): versioned pydantic models and the ``Event`` envelope.

Every detail carries ``eventId`` (a UUID, the consumers' idempotency key), ``occurredAt`` (UTC) and
``schemaVersion``. Field names are camelCase on the wire and snake_case in Python (both are accepted on
input; output always uses the wire names). Values are normalized on the way in, so equal events
serialize to equal bytes:

- addresses: ``0x`` + 40 hex digits in any case, lower-cased;
- token ids and amounts: decimal strings (or ints) in ``0 … 2**256-1``, without leading zeros; they stay
  strings on the wire because JSON numbers lose precision beyond 2**53 in most consumers;
- transaction hashes: ``0x`` + 64 hex digits, lower-cased.

Unknown fields are ignored (tolerant reader), so adding an optional field is compatible; removing or
changing the meaning of one needs a new ``schemaVersion``. ``parse_detail`` is the strict entry point
for details read from the wire: it also insists on the ``eventId``/``occurredAt``/``schemaVersion``
that producers get by default, because a generated id would defeat idempotency.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from such_market.errors import InvalidEventError
from such_market.events.wire import MAX_LABEL_LENGTH, MAX_LIST_ITEMS, TX_HASH, require_common_fields
from such_market.validation import normalize_address, normalize_uint256


def _normalize_tx_hash(value: object) -> str:
    if not isinstance(value, str) or not TX_HASH.fullmatch(value):
        raise ValueError("must be 0x followed by 64 hexadecimal digits")
    return value.lower()


def _normalize_event_id(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID string") from None


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


Address = Annotated[str, BeforeValidator(normalize_address)]
Uint256 = Annotated[str, BeforeValidator(normalize_uint256)]
TxHash = Annotated[str, BeforeValidator(_normalize_tx_hash)]
EventId = Annotated[str, BeforeValidator(_normalize_event_id)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH)]


class EventDetail(BaseModel):
    """Fields every detail carries; subclasses set ``DETAIL_TYPE`` and add their own fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        extra="ignore",
        # Each model's validator is built on its first use, not at import: a consumer handles one or two
        # detail types, and building all of them cost its cold start ~35 ms.
        defer_build=True,
    )

    DETAIL_TYPE: ClassVar[str]

    event_id: EventId = Field(default_factory=_new_event_id)
    occurred_at: UtcDatetime = Field(default_factory=_now)
    schema_version: Literal[1] = 1

    def dump_json(self) -> bytes:
        """The wire form of this detail (camelCase, RFC 3339 UTC times), as stored and as published."""
        return orjson.dumps(self.model_dump(), option=orjson.OPT_UTC_Z)


class _CollectionEvent(EventDetail):
    contract_address: Address
    reason: Label


class CollectionUpdated(_CollectionEvent):
    """``collection.updated``: a collection's data changed; every cache key of it is invalid."""

    DETAIL_TYPE: ClassVar[str] = "collection.updated"


class CollectionRefreshed(_CollectionEvent):
    """``collection.refreshed``: an ingestion finished; every cache key of the collection is invalid."""

    DETAIL_TYPE: ClassVar[str] = "collection.refreshed"


class CollectionIngestRequested(_CollectionEvent):
    """``collection.ingest_requested``: run the ingestion job of the collection."""

    DETAIL_TYPE: ClassVar[str] = "collection.ingest_requested"


class NftTransferred(EventDetail):
    """``nft.transferred``: one transfer log (``removed`` when a reorg dropped it)."""

    DETAIL_TYPE: ClassVar[str] = "nft.transferred"

    contract_address: Address
    token_id: Uint256
    from_: Address = Field(alias="from")
    to: Address
    amount: Uint256 = "1"
    block_number: NonNegativeInt
    tx_hash: TxHash
    log_index: NonNegativeInt
    removed: bool = False


class OwnershipChanged(EventDetail):
    """``ownership.changed``: owners of these tokens changed; these wallets gained or lost some."""

    DETAIL_TYPE: ClassVar[str] = "ownership.changed"

    contract_address: Address
    token_ids: tuple[Uint256, ...] = Field(max_length=MAX_LIST_ITEMS)
    wallets: tuple[Address, ...] = Field(max_length=MAX_LIST_ITEMS)


class UserUpdated(EventDetail):
    """``user.updated``: a Farcaster user's profile or verified wallets changed."""

    DETAIL_TYPE: ClassVar[str] = "user.updated"

    fid: PositiveInt
    wallets: tuple[Address, ...] = Field(max_length=MAX_LIST_ITEMS)


class CacheCleared(EventDetail):
    """``cache.cleared``: an admin cleared cache keys of ``scope`` (durable state is never cleared)."""

    DETAIL_TYPE: ClassVar[str] = "cache.cleared"

    scope: Literal["all", "collection", "wallet", "user"]
    by: Label


class CachePerformanceTestRequested(EventDetail):
    """``cache.performance_test_requested``: run the live cache performance test ``runId`` (an admin asked
    for it; the run's record and lock already exist, ``such_market.perftest``)."""

    DETAIL_TYPE: ClassVar[str] = "cache.performance_test_requested"
    run_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    profile: Literal["quick", "standard", "stress"]


DETAIL_TYPES: Final[Mapping[str, type[EventDetail]]] = MappingProxyType(
    {
        model.DETAIL_TYPE: model
        for model in (
            CollectionUpdated,
            CollectionRefreshed,
            NftTransferred,
            OwnershipChanged,
            UserUpdated,
            CacheCleared,
            CollectionIngestRequested,
            CachePerformanceTestRequested,
        )
    }
)
"""Every detail type on the bus and its model."""


def _describe(error: ValidationError) -> str:
    # Messages name the field and the rule, never the offending input.
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'detail'}: {item['msg']}" for item in error.errors()
    )


def parse_detail(detail_type: str, detail: Mapping[str, Any]) -> EventDetail:
    """Validate a detail read from the wire against the model of ``detail_type``.

    Raises ``InvalidEventError`` for an unknown detail type, a detail that is not an object, a missing
    ``eventId``/``occurredAt``/``schemaVersion``, or any field that fails its schema.
    """
    model = DETAIL_TYPES.get(detail_type)
    if model is None:
        raise InvalidEventError(f"unknown detail type {detail_type[:100]!r}")
    if not isinstance(detail, Mapping):
        raise InvalidEventError(f"the {detail_type} detail is not a JSON object")
    require_common_fields(detail_type, detail)
    try:
        return model.model_validate(detail)
    except ValidationError as error:
        raise InvalidEventError(f"invalid {detail_type} detail: {_describe(error)}") from error


@dataclass(frozen=True, slots=True)
class Event:
    """One event as it travels: its detail, whose class names the detail type."""

    detail: EventDetail

    @property
    def detail_type(self) -> str:
        """The EventBridge ``detail-type`` (``collection.updated``, …)."""
        return self.detail.DETAIL_TYPE

    @property
    def event_id(self) -> str:
        """The detail's ``eventId``."""
        return self.detail.event_id

    @property
    def occurred_at(self) -> datetime:
        """The detail's ``occurredAt`` (UTC)."""
        return self.detail.occurred_at

    def detail_json(self) -> bytes:
        """The detail's wire form (``EventDetail.dump_json``)."""
        return self.detail.dump_json()

    @classmethod
    def from_eventbridge(cls, raw: Mapping[str, Any]) -> Event:
        """Parse an EventBridge event as delivered to a target (``detail-type`` and ``detail``)."""
        detail_type = raw.get("detail-type")
        detail = raw.get("detail")
        if not isinstance(detail_type, str) or not isinstance(detail, Mapping):
            raise InvalidEventError("not an EventBridge event: detail-type or detail is missing")
        return cls(parse_detail(detail_type, detail))
