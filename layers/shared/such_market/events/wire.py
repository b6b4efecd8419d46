"""Events as the publisher sees them: anything that names its ``eventId`` and makes its ``PutEvents`` entry.

``such_market.events.models.Event`` (a validated pydantic detail) is the usual kind. ``WireEvent`` is an
event whose detail is already in its wire form: for a producer on a cold path that must not pay for
pydantic and every model of the bus (about 0.15 s of a cold start) to publish one small, fixed-shape
event — ``cache.cleared`` from the cache-clear function. Such a producer's tests parse what it builds
with ``models.parse_detail``, so the schema stays the models' one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SCHEMA_VERSION: Final = 1


class PublishableEvent(Protocol):
    """What ``EventPublisher.publish`` needs of an event."""

    @property
    def event_id(self) -> str: ...

    def to_entry(self, bus_name: str, source: str) -> PutEventsRequestEntryTypeDef: ...


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

    def to_entry(self, bus_name: str, source: str) -> PutEventsRequestEntryTypeDef:
        """The ``PutEvents`` entry that publishes this event on ``bus_name``."""
        detail = orjson.dumps(self.detail, option=orjson.OPT_UTC_Z).decode()
        return put_events_entry(bus_name, source, self.detail_type, detail, self.occurred_at)


def put_events_entry(
    bus_name: str, source: str, detail_type: str, detail: str, occurred_at: datetime
) -> PutEventsRequestEntryTypeDef:
    """The ``PutEvents`` entry of an event whose detail is already its wire JSON (every kind of event)."""
    return {
        "EventBusName": bus_name,
        "Source": source,
        "DetailType": detail_type,
        "Detail": detail,
        "Time": occurred_at,
    }
