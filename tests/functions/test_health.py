"""GET /api/health through its handler: healthy, cache down, database down, not migrated, misconfigured."""

from __future__ import annotations

import json

import health
import pytest

from local.services import free_port
from such_market.container import close_all
from such_market.errors import ConfigurationError
from tests.functions.conftest import FakeContext, load_event


def _call(context: FakeContext) -> tuple[int, dict[str, object], dict[str, str]]:
    response = health.lambda_handler(load_event("health"), context)
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def test_healthy_when_database_migrated_and_cache_up(lambda_env: dict[str, str], context: FakeContext) -> None:
    # Given a migrated database and a running cache
    # When the health endpoint is called
    status, body, headers = _call(context)
    # Then it answers 200 with both components ok and the schema current
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["migrationsCurrent"] is True
    assert body["database"]["schemaVersion"] == body["database"]["requiredSchemaVersion"]
    assert body["cache"]["status"] == "ok"
    assert headers["Content-Type"] == "application/json"


def test_unavailable_when_cache_down(
    lambda_env: dict[str, str], context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cache address where nothing listens
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    # When the health endpoint is called
    status, body, _ = _call(context)
    # Then it answers 503 naming the cache, without internals
    assert status == 503
    assert body["cache"] == {"status": "unavailable", "latencyMs": body["cache"]["latencyMs"], "error": "unreachable"}
    assert body["database"]["status"] == "ok"


def test_unavailable_when_database_down(
    lambda_env: dict[str, str], context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database address where nothing listens
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    close_all()
    # When the health endpoint is called
    status, body, _ = _call(context)
    # Then it answers 503 naming the database
    assert status == 503
    assert body["database"]["status"] == "unavailable"
    assert body["database"]["error"] == "unreachable"
    assert body["cache"]["status"] == "ok"


def test_unavailable_when_database_not_migrated(
    lambda_env: dict[str, str], empty_db_url: str, context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty database
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    close_all()
    # When the health endpoint is called
    status, body, _ = _call(context)
    # Then it answers 503: reachable but not migrated
    assert status == 503
    assert body["database"]["status"] == "ok"
    assert body["database"]["schemaVersion"] is None
    assert body["database"]["migrationsCurrent"] is False
    assert body["database"]["error"] == "not migrated"


def test_missing_variable_fails_at_cold_start_naming_it(
    lambda_env: dict[str, str], context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container without any database variable
    monkeypatch.delenv("DATABASE_URL")
    close_all()
    # When the function is invoked, Then the configuration error names the variables to set
    with pytest.raises(ConfigurationError, match="DATABASE_URL or DB_SECRET_ARN"):
        health.lambda_handler(load_event("health"), context)
