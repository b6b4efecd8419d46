"""Settings validation: a missing or malformed variable fails at cold start with a message naming it."""

from __future__ import annotations

import pytest

from such_market.config import (
    AdminSettings,
    CacheSettings,
    DatabaseSettings,
    EventSettings,
    FunctionSettings,
    SettingsPart,
    load_settings,
)
from such_market.container import close_all
from such_market.errors import ConfigurationError
from such_market.upstream.neynar_settings import NeynarSettings


class AllSettings(FunctionSettings):
    """Every part at once, as a function that needs everything would declare it."""

    database: DatabaseSettings
    cache: CacheSettings
    events: EventSettings
    admin: AdminSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "DB_SECRET_ARN",
        "REDIS_URL",
        "REDIS_HOST",
        "ADMIN_TOKEN",
        "ADMIN_TOKEN_SECRET_ARN",
        "CACHE_PREFIX",
        "REDIS_PORT",
        "EVENT_BUS_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    close_all()


def test_valid_local_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@localhost/db")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("ADMIN_TOKEN", "a-local-token-of-enough-length")
    settings = load_settings(AllSettings)
    assert settings.cache.cache_prefix == "such-market"
    assert settings.events.event_bus_name == "such-market"
    assert settings.part(CacheSettings) is settings.cache
    assert settings.service.powertools_service_name == "such-market"
    assert load_settings(AllSettings) is settings  # read once per container
    assert load_settings(CacheSettings) == settings.cache  # a part can be loaded alone


def test_every_invalid_variable_of_every_part_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    monkeypatch.setenv("REDIS_URL", "http://x")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(AllSettings)
    assert all(name in str(raised.value) for name in ("DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN"))


def test_a_missing_part_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@localhost/db")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("ADMIN_TOKEN", "a-local-token-of-enough-length")
    with pytest.raises(ConfigurationError, match="AllSettings has no NeynarSettings"):
        load_settings(AllSettings).part(NeynarSettings)


def test_a_field_that_is_not_a_part_is_refused() -> None:
    class Broken(FunctionSettings):
        name: str

    with pytest.raises(TypeError, match=r"Broken\.name is not a settings part"):
        load_settings(Broken)
    assert issubclass(CacheSettings, SettingsPart)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "redis://x", "ADMIN_TOKEN": "a-local-token-of-enough-length"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x/y", "ADMIN_TOKEN": "a-local-token-of-enough-length"}, "REDIS_URL"),
        ({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"}, "ADMIN_TOKEN"),
        ({"DATABASE_URL": "mysql://x/y", "REDIS_URL": "redis://x", "ADMIN_TOKEN": "a" * 20}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "http://x", "ADMIN_TOKEN": "a" * 20}, "REDIS_URL"),
        (
            {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "ADMIN_TOKEN": "a" * 20, "REDIS_PORT": "x"},
            "REDIS_PORT",
        ),
        (
            {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "ADMIN_TOKEN": "short"},
            "ADMIN_TOKEN",
        ),
        (
            {
                "DATABASE_URL": "postgresql://x/y",
                "REDIS_URL": "redis://x",
                "ADMIN_TOKEN": "a" * 20,
                "CACHE_PREFIX": "A B",
            },
            "CACHE_PREFIX",
        ),
        (
            {"DB_SECRET_ARN": "not-an-arn", "REDIS_URL": "redis://x", "ADMIN_TOKEN": "a" * 20},
            "DB_SECRET_ARN",
        ),
    ],
)
def test_missing_or_malformed_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named):
        load_settings(AllSettings)
