"""The migration runner: applies ``migrations/NNNN_<what>.sql`` in order, once each, under a lock.

Each file runs in its own transaction together with the row that records it in ``schema_migrations``,
so a failing migration leaves nothing behind and is retried on the next run. A session-level advisory
lock makes concurrent runners (two deploys, ``make dev`` beside the tests) wait for each other; the
second one then finds everything applied and does nothing. A recorded migration whose file changed is
reported, not silently re-run.

``REQUIRED_SCHEMA_VERSION`` is the newest migration this code needs; the health check compares it
with what the database has applied (the SQL files themselves are not shipped to Lambda).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from such_market.errors import SuchMarketError

if TYPE_CHECKING:
    import psycopg

REQUIRED_SCHEMA_VERSION = "0019"
MIGRATION_LOCK_KEY = 0x5C_4D_41_52_4B_45_54  # "such-market" migrations, an arbitrary constant
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY CHECK (version ~ '^[0-9]{4}$'),
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(SuchMarketError):
    """A migration failed, or the recorded migrations disagree with the files."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a run did: the versions it applied and the ones that were already there."""

    applied: tuple[str, ...]
    already_applied: tuple[str, ...]


def discover(directory: Path) -> list[Migration]:
    """The migration files of ``directory`` in version order; refuses odd names and duplicates."""
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_<what>.sql")
        migrations.append(Migration(match["version"], match["name"], path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, str]:
    """Version → checksum of every recorded migration (empty when the ledger does not exist)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    return {str(version): str(checksum) for version, checksum in rows}


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], directory: Path, *, target: str | None = None
) -> MigrationReport:
    """Apply every migration of ``directory`` up to ``target`` (inclusive) that is not applied yet.

    ``conn`` must be in autocommit mode: each migration gets its own transaction.
    """
    if not conn.autocommit:
        raise MigrationError("the migration runner needs an autocommit connection")
    migrations = [m for m in discover(directory) if target is None or m.version <= target]
    applied: list[str] = []
    already: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_CREATE_LEDGER)
        recorded = applied_versions(conn)
        for migration in migrations:
            if migration.version in recorded:
                if recorded[migration.version] != migration.checksum:
                    raise MigrationError(f"migration {migration.version}_{migration.name} changed after it was applied")
                already.append(migration.version)
                continue
            _apply(conn, migration)
            applied.append(migration.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return MigrationReport(applied=tuple(applied), already_applied=tuple(already))


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    import psycopg

    try:
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as error:
        detail = error.diag.message_primary or type(error).__name__
        raise MigrationError(f"migration {migration.version}_{migration.name} failed: {detail}") from error


def schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """The newest applied migration version, or None for an empty database."""
    versions = applied_versions(conn)
    return max(versions) if versions else None
