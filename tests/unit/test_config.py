"""Settings validation: a missing or malformed variable fails at cold start with a message naming it."""

from __future__ import annotations

import dataclasses

import pytest

from such_market.config import (
    AdminSettings,
    CacheSettings,
    DatabaseSettings,
    EventSettings,
    FunctionSettings,
    LogLevel,
    SecretStr,
    ServiceSettings,
    SettingsError,
    SettingsPart,
    load_settings,
    setting,
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


# -- the settings-part mechanism itself (our own, without pydantic_settings) ---------------------------------------


class Sample(SettingsPart):
    """Every kind of field and bound the parts use."""

    count: int = setting(3, ge=1, le=10)
    ratio: float = setting(1.0, gt=0, le=1)
    enabled: bool = False
    level: LogLevel = "INFO"
    name: str = setting("ab", pattern=r"^[a-z]+$", min_length=2, max_length=4)
    key: SecretStr | None = None
    url: str | None = None


SAMPLE_VARIABLES = ("COUNT", "RATIO", "ENABLED", "LEVEL", "NAME", "KEY", "URL")


@pytest.fixture
def sample_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("COUNT", "x", "COUNT: should be a valid integer"),
        ("COUNT", "1.5", "COUNT: should be a valid integer"),
        ("COUNT", "0", "COUNT: should be greater than or equal to 1"),
        ("COUNT", "11", "COUNT: should be less than or equal to 10"),
        ("RATIO", "zero", "RATIO: should be a valid number"),
        ("RATIO", "0", "RATIO: should be greater than 0"),
        ("RATIO", "1.5", "RATIO: should be less than or equal to 1"),
        ("ENABLED", "maybe", "ENABLED: should be a valid boolean"),
        ("LEVEL", "LOUD", "LEVEL: should be 'DEBUG' or 'INFO' or 'WARNING' or 'ERROR' or 'CRITICAL'"),
        ("NAME", "a", "NAME: should have at least 2 characters"),
        ("NAME", "abcde", "NAME: should have at most 4 characters"),
        ("NAME", "AB", "NAME: should match pattern '^[a-z]+$'"),
    ],
)
def test_each_kind_of_bad_variable_is_named_with_its_problem(
    sample_env: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    sample_env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(Sample)
    assert str(raised.value) == f"invalid configuration for Sample: {problem}"


def test_every_bad_variable_of_a_part_is_named_at_once(sample_env: pytest.MonkeyPatch) -> None:
    sample_env.setenv("COUNT", "x")
    sample_env.setenv("RATIO", "2")
    sample_env.setenv("ENABLED", "maybe")
    with pytest.raises(SettingsError) as raised:
        Sample()
    assert [problem.split(":")[0] for problem in raised.value.problems] == ["COUNT", "RATIO", "ENABLED"]


def test_variables_are_typed_and_read_in_any_case_and_empty_is_unset(sample_env: pytest.MonkeyPatch) -> None:
    sample_env.setenv("count", "7")
    sample_env.setenv("RATIO", "0.5")
    sample_env.setenv("ENABLED", "yes")
    sample_env.setenv("LEVEL", "DEBUG")
    sample_env.setenv("NAME", "")  # empty: the default
    sample_env.setenv("KEY", "the-secret-value")
    sample_env.setenv("URL", "")
    sample = Sample()
    assert (sample.count, sample.ratio, sample.enabled, sample.level, sample.name, sample.url) == (
        7,
        0.5,
        True,
        "DEBUG",
        "ab",
        None,
    )
    assert sample.key is not None
    assert sample.key.get_secret_value() == "the-secret-value"
    assert "the-secret-value" not in repr(sample)
    assert "the-secret-value" not in str(dataclasses.asdict(sample))


def test_given_values_win_over_the_environment_and_are_validated_too(sample_env: pytest.MonkeyPatch) -> None:
    sample_env.setenv("COUNT", "7")
    sample_env.setenv("NAME", "xyz")
    sample = Sample(count=2)
    assert (sample.count, sample.name) == (2, "xyz")
    assert dataclasses.replace(sample, count=5).count == 5
    with pytest.raises(ConfigurationError, match="COUNT: should be less than or equal to 10"):
        Sample(count=11)
    with pytest.raises(TypeError, match="Sample has no field colour"):
        Sample(colour="red")  # type: ignore[call-arg]


def test_a_part_is_frozen_comparable_and_hashable(sample_env: pytest.MonkeyPatch) -> None:
    sample = Sample()
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.count = 4  # type: ignore[misc]
    assert sample == Sample()
    assert hash(sample) == hash(Sample())
    assert sample != Sample(count=4)


def test_a_rule_across_fields_is_checked_once_the_fields_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(CacheSettings)
    assert str(raised.value) == "invalid configuration for CacheSettings: set REDIS_URL or REDIS_HOST"
    monkeypatch.setenv("REDIS_PORT", "0")
    close_all()
    with pytest.raises(ConfigurationError) as raised:
        load_settings(CacheSettings)
    assert (
        str(raised.value) == "invalid configuration for CacheSettings: REDIS_PORT: should be greater than or equal to 1"
    )


def test_a_function_names_every_problem_of_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    monkeypatch.setenv("REDIS_PORT", "x")
    monkeypatch.setenv("ADMIN_TOKEN", "short")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(AllSettings)
    assert str(raised.value) == (
        "invalid configuration for AllSettings: DATABASE_URL: should match pattern '^postgres(ql)?://'; "
        "REDIS_PORT: should be a valid integer; ADMIN_TOKEN: should have at least 16 characters"
    )


def test_the_parts_of_a_function_are_listed() -> None:
    assert dict(AllSettings.parts()) == {
        "service": ServiceSettings,
        "database": DatabaseSettings,
        "cache": CacheSettings,
        "events": EventSettings,
        "admin": AdminSettings,
    }
