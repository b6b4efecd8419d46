"""The code's required schema version is the newest migration: health reports 503 until it is applied."""

from __future__ import annotations

from pathlib import Path

from such_market.db.migrations import REQUIRED_SCHEMA_VERSION, discover

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def test_required_schema_version_is_the_newest_migration() -> None:
    assert discover(MIGRATIONS)[-1].version == REQUIRED_SCHEMA_VERSION
