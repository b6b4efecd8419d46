"""``make migrate``: apply ``migrations/`` to the configured database and say what was applied.

The database is ``DATABASE_URL``, or the RDS database whose credentials secret ``DB_SECRET_ARN`` names
(the same settings the functions read). ``python -m local.migrate --target 0003`` stops after that
version. Exits non-zero with the runner's message when a migration fails or the ledger disagrees with
the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
LAYER_DIR = ROOT / "layers" / "shared"
# Data migrations over a large legacy database outlast the functions' statement timeout.
MIGRATION_STATEMENT_TIMEOUT_MS = 600_000


def main(argv: list[str] | None = None) -> int:
    """Run the migrations; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m local.migrate", description=__doc__)
    parser.add_argument("--target", metavar="NNNN", help="apply migrations up to and including this version only")
    args = parser.parse_args(argv)
    target: str | None = args.target
    if target is not None and not (len(target) == 4 and target.isdigit()):
        parser.error("--target takes a four-digit version such as 0003")

    # Run from a fresh clone, the layer is not installed: import it from its folder as Lambda would.
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))
    import psycopg

    from such_market.config import DatabaseSettings, load_settings
    from such_market.db.connection import connect
    from such_market.db.migrations import MigrationError, discover, migrate
    from such_market.errors import ConfigurationError

    try:
        settings = dataclasses.replace(
            load_settings(DatabaseSettings), db_statement_timeout_ms=MIGRATION_STATEMENT_TIMEOUT_MS
        )
        with connect(settings) as conn:
            report = migrate(conn, MIGRATIONS, target=target)
    except (ConfigurationError, MigrationError) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as error:
        print(f"migrate: cannot reach the database: {error}", file=sys.stderr)
        return 1
    names = {m.version: f"{m.version}_{m.name}" for m in discover(MIGRATIONS)}
    for version in report.applied:
        print(f"applied {names[version]}")
    newest = max(report.applied + report.already_applied, default="none")
    print(
        f"{len(report.applied)} migration(s) applied, {len(report.already_applied)} already applied; "
        f"schema version {newest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
