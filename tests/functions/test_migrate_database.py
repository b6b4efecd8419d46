"""The migration custom resource (``MigrateDatabaseFunction``) against the embedded PostgreSQL, with a local
HTTP server standing in for CloudFormation's presigned response URL: what our code PUT there is asserted.

Create migrates an empty database, Update applies what is pending (or nothing), a failing migration answers
FAILED with its error and leaves nothing of itself, Delete keeps the data, and a response URL that fails
is retried a bounded number of times within the invocation's deadline, then given up.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import migrate_database
import psycopg
import pytest

from local.http_server import BackgroundHttpServer
from such_market.custom_resource import RESPONSE_ATTEMPTS
from such_market.db.migrations import REQUIRED_SCHEMA_VERSION, discover, migrate
from such_market.db.on_deploy import PHYSICAL_RESOURCE_ID
from tests.functions.conftest import FakeContext

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/such-market/8b2f2a30-0000-4000-8000-000000000000"


@dataclass
class ResponseUrl:
    """A stand-in for the presigned S3 URL: records every request; answers ``status`` (or never, ``hang``)."""

    status: int = 200
    hang: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request["body"]) for request in self.received]


@pytest.fixture
def response_url() -> Iterator[ResponseUrl]:
    recorder = ResponseUrl()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            recorder.received.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": self.rfile.read(length)}
            )
            if recorder.hang:
                recorder.release.wait(30)
                return
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = BackgroundHttpServer("127.0.0.1", 0, Handler, name="cfn-response")
    recorder.url = f"{server.url}/cloudformation-response?X-Amz-Signature=abc"
    try:
        yield recorder
    finally:
        recorder.release.set()
        server.stop()


class ShortContext(FakeContext):
    """An invocation with 4 s left: the deadline, not the attempt count, ends the retries."""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 4_000


def request(kind: str, url: str, *, schema_version: str = REQUIRED_SCHEMA_VERSION) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": f"request-{kind.lower()}",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:…", "SchemaVersion": schema_version},
    }
    if kind != "Create":
        event["PhysicalResourceId"] = PHYSICAL_RESOURCE_ID
    return event


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function's environment: only ``DATABASE_URL`` (set by each test) and no AWS secrets."""
    for name in ("DB_SECRET_ARN", "DB_HOST_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from such_market.container import close_all

    monkeypatch.setenv("DATABASE_URL", url)
    close_all()


def applied(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            return []
        return [str(v) for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def expected_body(kind: str, status: str) -> dict[str, Any]:
    return {
        "Status": status,
        "PhysicalResourceId": PHYSICAL_RESOURCE_ID,
        "StackId": STACK_ID,
        "RequestId": f"request-{kind.lower()}",
        "LogicalResourceId": "DatabaseMigrations",
    }


ALL_VERSIONS = [m.version for m in discover(MIGRATIONS)]


def test_the_function_ships_the_repository_migrations() -> None:
    # Given the folder beside the handler (a link that sam build copies)
    shipped = [m.version for m in discover(migrate_database.MIGRATIONS)]
    # Then it holds every migration, up to the version the code requires
    assert shipped == ALL_VERSIONS
    assert shipped[-1] == REQUIRED_SCHEMA_VERSION


def test_no_migration_steps_out_of_its_transaction() -> None:
    # Given every migration's SQL without its comments
    for migration in discover(MIGRATIONS):
        sql = re.sub(r"--[^\n]*", "", migration.sql)
        # Then none ends, begins or escapes the runner's transaction (which is what makes a failure leave nothing)
        assert not re.search(r"(?im)^\s*(begin|commit|rollback|start\s+transaction)\s*;", sql), migration.path.name
        assert not re.search(r"(?i)\b(concurrently|vacuum)\b", sql), migration.path.name


def test_create_migrates_an_empty_database_and_answers_success(
    database: None, empty_db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty database
    use_database(monkeypatch, empty_db_url)
    # When CloudFormation creates the resource
    result = migrate_database.lambda_handler(request("Create", response_url.url), FakeContext())
    # Then every migration is applied
    assert applied(empty_db_url) == ALL_VERSIONS
    # And one PUT to the response URL carried SUCCESS with the stack's ids, a stable id and the schema version
    assert len(response_url.received) == 1
    put = response_url.received[0]
    assert put["path"] == "/cloudformation-response?X-Amz-Signature=abc"
    assert put["headers"].get("Content-Type") == ""  # the presigned URL was signed without one
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Create", "SUCCESS").items()
    assert body["Data"] == {"SchemaVersion": REQUIRED_SCHEMA_VERSION, "Applied": ", ".join(ALL_VERSIONS)}
    assert REQUIRED_SCHEMA_VERSION in body["Reason"]
    assert result["Delivered"] is True


def test_update_applies_only_the_pending_migrations(
    database: None, empty_db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database deployed at 0010
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        migrate(conn, MIGRATIONS, target="0010")
    use_database(monkeypatch, empty_db_url)
    # When the stack is updated with code that needs the newest schema
    migrate_database.lambda_handler(request("Update", response_url.url), FakeContext())
    # Then the newer migrations are applied, and the answer names them, under the same physical id
    assert applied(empty_db_url) == ALL_VERSIONS
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Update", "SUCCESS").items()
    pending = [v for v in ALL_VERSIONS if v > "0010"]
    assert body["Data"] == {"SchemaVersion": REQUIRED_SCHEMA_VERSION, "Applied": ", ".join(pending)}


def test_update_with_nothing_pending_changes_nothing(
    database: None, db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database at the newest version
    use_database(monkeypatch, db_url)
    before = applied(db_url)
    # When an update (or a rollback's update) arrives
    migrate_database.lambda_handler(request("Update", response_url.url), FakeContext())
    # Then nothing is applied and the answer says so
    assert applied(db_url) == before
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Update", "SUCCESS").items()
    assert body["Data"] == {"SchemaVersion": REQUIRED_SCHEMA_VERSION, "Applied": "none"}


def test_a_failing_migration_answers_failed_with_its_error_and_leaves_nothing_half_applied(
    database: None,
    db_url: str,
    response_url: ResponseUrl,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given the shipped migrations plus one that creates a table, writes a row and then fails
    for path in MIGRATIONS.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "9998_fine.sql").write_text("CREATE TABLE deploy_fine (id int);")
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE half_applied (id int);\nINSERT INTO half_applied VALUES (1);\nSELECT 1 / 0;\n"
    )
    monkeypatch.setattr(migrate_database, "MIGRATIONS", tmp_path)
    use_database(monkeypatch, db_url)
    # When the stack is updated
    migrate_database.lambda_handler(request("Update", response_url.url, schema_version="9999"), FakeContext())
    # Then CloudFormation is told FAILED with the migration and PostgreSQL's error (it rolls back)
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Update", "FAILED").items()
    assert "9999_broken" in body["Reason"]
    assert "division by zero" in body["Reason"]
    # And the failing migration left nothing: no table, no row, no ledger entry; the one before it stays
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('half_applied')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('deploy_fine')").fetchone() != (None,)
    assert applied(db_url) == [*ALL_VERSIONS, "9998"]

    # When CloudFormation rolls back: an Update with the old SchemaVersion, served by the function that still
    # ships the broken migration (the alias rolls back after the custom resource)
    migrate_database.lambda_handler(request("Update", response_url.url, schema_version="9998"), FakeContext())
    # Then the rollback succeeds: nothing past the version it asks for is tried again
    rollback = response_url.bodies()[-1]
    assert rollback["Status"] == "SUCCESS", rollback["Reason"]
    assert rollback["Data"] == {"SchemaVersion": "9998", "Applied": "none"}
    assert applied(db_url) == [*ALL_VERSIONS, "9998"]


def test_a_template_needing_a_newer_schema_than_shipped_fails(
    database: None, db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the resource's SchemaVersion beyond the migrations the function carries
    use_database(monkeypatch, db_url)
    # When it is updated
    migrate_database.lambda_handler(request("Update", response_url.url, schema_version="9999"), FakeContext())
    # Then the deploy fails rather than run code on a schema it does not have
    (body,) = response_url.bodies()
    assert body["Status"] == "FAILED"
    assert f"requires schema version 9999; the migrations shipped reach {REQUIRED_SCHEMA_VERSION}" in body["Reason"]


def test_an_unreachable_database_answers_failed(
    database: None, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database that refuses connections
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_database(monkeypatch, f"postgresql://nobody:secret-password@127.0.0.1:{port}/nothing")
    # When the stack creates the resource
    migrate_database.lambda_handler(request("Create", response_url.url), FakeContext())
    # Then the answer is FAILED with the connection error, without the password
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Create", "FAILED").items()
    assert "OperationalError" in body["Reason"]
    assert "secret-password" not in body["Reason"]


def test_delete_keeps_the_data(
    database: None,
    db: psycopg.Connection[tuple[object, ...]],
    db_url: str,
    response_url: ResponseUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a deployed database with data
    db.execute("INSERT INTO collections (contract_address, name) VALUES (%s, 'Kept')", ("0x" + "ab" * 20,))
    use_database(monkeypatch, db_url)
    before = applied(db_url)
    # When the stack (or the resource) is deleted
    migrate_database.lambda_handler(request("Delete", response_url.url), FakeContext())
    # Then it answers SUCCESS and the schema and the data are untouched
    (body,) = response_url.bodies()
    assert body.items() >= expected_body("Delete", "SUCCESS").items()
    assert applied(db_url) == before
    assert db.execute("SELECT name FROM collections").fetchall() == [("Kept",)]


def test_a_response_url_answering_500_is_retried_a_bounded_number_of_times(
    database: None, db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a response URL that answers 500
    response_url.status = 500
    use_database(monkeypatch, db_url)
    # When the resource is updated
    result = migrate_database.lambda_handler(request("Update", response_url.url), FakeContext())
    # Then the same answer was PUT exactly RESPONSE_ATTEMPTS times, then given up (the function returned)
    bodies = response_url.bodies()
    assert len(bodies) == RESPONSE_ATTEMPTS
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["Status"] == "SUCCESS"
    assert result["Delivered"] is False


def test_a_refused_response_url_is_given_up_at_the_deadline(
    database: None, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a response URL whose port refuses connections, and an invocation with 4 s left
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_database(monkeypatch, db_url)
    # When the resource is updated
    result = migrate_database.lambda_handler(request("Update", f"http://127.0.0.1:{port}/r"), ShortContext())
    # Then the function returned, and said in its log that CloudFormation did not get the answer
    assert result["Delivered"] is False
    assert result["Status"] == "SUCCESS"
    failures = [r for r in caplog.records if r.getMessage().startswith("custom resource response not taken")]
    # fewer than the attempt limit: the deadline (3 s after the margin) stopped the backoff first
    assert 1 <= len(failures) < RESPONSE_ATTEMPTS
    assert any("could not be delivered" in r.getMessage() for r in caplog.records)


def test_a_response_url_that_never_answers_is_abandoned_at_the_deadline(
    database: None, db_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a response URL that takes the request and never answers, and an invocation with 4 s left
    response_url.hang = True
    use_database(monkeypatch, db_url)
    # When the resource is updated
    result = migrate_database.lambda_handler(request("Update", response_url.url), ShortContext())
    # Then the one attempt was cut at the deadline (its timeout is the time left) and the function returned
    assert len(response_url.received) == 1
    assert result["Delivered"] is False
