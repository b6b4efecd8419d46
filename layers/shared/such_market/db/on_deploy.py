"""Migrations on deploy: the use case behind the stack's ``Custom::DatabaseMigrations`` resource.

On Create and Update, the migrations shipped with the function are applied by the same runner as
``make migrate`` (``such_market.db.migrations``: each file in its own transaction with its ledger row,
under the advisory lock), so a failing migration leaves nothing of itself behind and the stack fails with
its error and rolls back. The resource's ``SchemaVersion`` property is the version the template's code
needs (``REQUIRED_SCHEMA_VERSION``); it changes with every new migration, which is what makes
CloudFormation send an Update, and an answer of SUCCESS promises the database has at least that version.
Migrations are applied up to that version, no further. An Update with nothing pending succeeds and changes
nothing; so does the Update a rollback sends with the old properties, even when the failed deploy's
function still ships the migration that failed (migrations only move forward, and the previous code runs
on the newer schema).

Delete does nothing to the database: deleting the stack, or replacing the resource, must never drop data.

The work runs under the invocation's deadline (``such_market.custom_resource.serve`` keeps time back to
answer): each statement gets that time as its ``statement_timeout``, and the connection is watched to the
deadline (``such_market.db.watchdog``), so a lock wait or a frozen database ends in FAILED, not a hang.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Final

from such_market import deadline
from such_market.config import DatabaseSettings, FunctionSettings
from such_market.custom_resource import Outcome, Request
from such_market.db import watchdog
from such_market.db.connection import connect
from such_market.db.migrations import migrate, schema_version

PHYSICAL_RESOURCE_ID: Final = "such-market-database-schema"
"""The resource's id for its whole life: the same on every update, so CloudFormation never replaces it."""
MIN_STATEMENT_TIMEOUT_MS: Final = 100
MAX_STATEMENT_TIMEOUT_MS: Final = 600_000


class MigrateDatabaseSettings(FunctionSettings):
    """The migration function's settings: only the database."""

    database: DatabaseSettings


def handle_schema_request(request: Request, *, settings: DatabaseSettings, directory: Path) -> Outcome:
    """Apply the pending migrations of ``directory`` on Create/Update; keep everything on Delete."""
    physical_id = request.physical_resource_id or PHYSICAL_RESOURCE_ID
    if request.request_type == "Delete":
        return Outcome("SUCCESS", "the database and its data are kept", physical_id)
    required = request.properties.get("SchemaVersion")
    left = deadline.remaining()
    if left is not None:
        timeout_ms = max(MIN_STATEMENT_TIMEOUT_MS, min(MAX_STATEMENT_TIMEOUT_MS, math.floor(left * 1000)))
        settings = dataclasses.replace(settings, db_statement_timeout_ms=timeout_ms)
    with connect(settings) as conn:
        watchdog.guard(conn)
        # Up to the version the template asks for, no further: the Update a rollback sends carries the old
        # version, and must not apply again the migration whose failure caused the rollback.
        report = migrate(conn, directory, target=required if isinstance(required, str) and required else None)
        version = schema_version(conn)
    if isinstance(required, str) and required and (version is None or version < required):
        return Outcome(
            "FAILED",
            f"the template requires schema version {required}; the migrations shipped reach {version or 'none'}",
            physical_id,
        )
    applied = ", ".join(report.applied) or "none"
    return Outcome(
        "SUCCESS",
        f"schema version {version}; applied {len(report.applied)} migration(s): {applied}",
        physical_id,
        {"SchemaVersion": version or "", "Applied": applied},
    )
