"""How values are written in answers and events: times as ISO-8601 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(value: datetime) -> str:
    """``value`` as ``2026-12-04T20:23:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_utc_or_none(value: datetime | None) -> str | None:
    """``iso_utc(value)``, or ``None`` for a time that is not set."""
    return None if value is None else iso_utc(value)
