"""Settings: one small pydantic model per function, composed of parts, validated once at cold start.

Each part says how to reach one thing and reads its own variables: ``ServiceSettings`` (Powertools),
``DatabaseSettings``, ``CacheSettings``, ``EventSettings``, ``AdminSettings`` here, and the upstreams'
``AlchemySettings`` and ``NeynarSettings`` beside their clients. A function's settings model is a
``FunctionSettings`` whose fields are the parts it needs (composition, not inheritance: two parts can
never shadow each other's methods, so each upstream's client gets its own key and nothing else)::

    class ReadPathSettings(FunctionSettings):
        database: DatabaseSettings
        cache: CacheSettings
        events: EventSettings
        alchemy: AlchemySettings

``load_settings(Model)`` reads the environment once per container, builds every part, and turns all
validation failures into one ``ConfigurationError`` whose message names every offending variable, so a
broken deployment fails at cold start with a message an operator can act on. A part can be loaded
alone too (``load_settings(CacheSettings)``). ``settings.part(CacheSettings)`` finds a part by type.

Secrets are referenced by ARN in AWS (``DB_SECRET_ARN``, ``ADMIN_TOKEN_SECRET_ARN``, …) and given as
plain variables locally (``DATABASE_URL``, ``ADMIN_TOKEN``); ``such_market.secrets`` resolves them.
"""

from __future__ import annotations

import functools
from typing import Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from such_market.container import per_container
from such_market.errors import ConfigurationError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsPart(BaseSettings):
    """One part of a function's settings, read from the environment (variable = field name, any case)."""

    # An empty variable is an unset one: the template declares the local-only variables (DATABASE_URL, …)
    # empty, so that `sam local invoke --env-vars` may set them (SAM passes only declared variables).
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False, env_ignore_empty=True)


class ServiceSettings(SettingsPart):
    """Settings every function has: its service name and log level (Powertools variables)."""

    powertools_service_name: str = "such-market"
    powertools_log_level: LogLevel = "INFO"


class DatabaseSettings(SettingsPart):
    """Where PostgreSQL is: a DSN locally, an RDS secret (through RDS Proxy) in AWS."""

    database_url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    db_secret_arn: str | None = Field(default=None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    db_host_override: str | None = Field(
        default=None, description="host to use instead of the secret's (the RDS Proxy endpoint)"
    )
    db_connect_timeout_seconds: int = Field(default=3, ge=1, le=30)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)

    @model_validator(mode="after")
    def _one_database_source(self) -> Self:
        if not self.database_url and not self.db_secret_arn:
            raise ValueError("set DATABASE_URL or DB_SECRET_ARN")
        return self


class CacheSettings(SettingsPart):
    """Where the Redis-compatible cache is and how it is addressed."""

    redis_url: str | None = Field(default=None, pattern=r"^rediss?://")
    redis_host: str | None = None
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_tls: bool = True
    redis_auth_secret_arn: str | None = Field(default=None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    redis_cluster: bool = False
    cache_prefix: str = Field(default="such-market", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    cache_connect_timeout_ms: int = Field(default=50, ge=5, le=5000)
    cache_socket_timeout_ms: int = Field(default=100, ge=5, le=5000)
    cache_analytics: bool = Field(default=True, description="record traffic analytics (GET /api/admin/cache/metrics)")
    cache_ttl_scale: float = Field(
        default=1.0, gt=0, le=1, description="multiplies every TTL tier (1 in production; less to study expiry)"
    )

    @model_validator(mode="after")
    def _one_cache_source(self) -> Self:
        if not self.redis_url and not self.redis_host:
            raise ValueError("set REDIS_URL or REDIS_HOST")
        return self


class EventSettings(SettingsPart):
    """Where events go: the EventBridge bus (and, locally, the endpoint of the local bus)."""

    event_bus_name: str = Field(default="such-market", pattern=r"^[A-Za-z0-9._\-/:]+$", max_length=256)
    event_source: str = "such-market"
    eventbridge_endpoint_url: str | None = Field(default=None, pattern=r"^https?://")


class AdminSettings(SettingsPart):
    """How the admin credential is checked: a SHA-256 hash kept in Secrets Manager, or a local token."""

    admin_token_secret_arn: str | None = Field(default=None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    admin_token: str | None = Field(default=None, min_length=16)

    @model_validator(mode="after")
    def _one_admin_source(self) -> Self:
        if not self.admin_token_secret_arn and not self.admin_token:
            raise ValueError("set ADMIN_TOKEN_SECRET_ARN (or ADMIN_TOKEN locally)")
        return self


class FunctionSettings(BaseModel):
    """A function's settings: its fields are the parts it needs (see the module doc)."""

    model_config = ConfigDict(frozen=True)

    service: ServiceSettings

    def part[P: SettingsPart](self, kind: type[P]) -> P:
        """The part of type ``kind``; a function without it is misconfigured code, named in the error."""
        found = self.optional_part(kind)
        if found is None:
            raise ConfigurationError(f"{type(self).__name__} has no {kind.__name__}")
        return found

    def optional_part[P: SettingsPart](self, kind: type[P]) -> P | None:
        """The part of type ``kind``, or ``None`` when this function's settings do not have one."""
        name = _field_holding(type(self), kind)
        return None if name is None else cast("P", getattr(self, name))


@functools.cache  # a pure function of two classes: it runs on every request, so it is looked up once
def _field_holding(model: type[FunctionSettings], kind: type[SettingsPart]) -> str | None:
    """The field of ``model`` whose part is a ``kind``, if any."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, kind):
            return name
    return None


def describe_validation_error(error: ValidationError) -> str:
    """Render a settings validation error as ``VARIABLE: problem; …`` naming each variable."""
    problems: list[str] = []
    for item in error.errors():
        names = [str(part).upper() for part in item["loc"] if isinstance(part, str)]
        name = ".".join(names) if names else "configuration"
        problems.append(f"{name}: {item['msg']}")
    return "; ".join(problems)


def _part_types(model: type[FunctionSettings]) -> dict[str, type[SettingsPart]]:
    parts: dict[str, type[SettingsPart]] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if not (isinstance(kind, type) and issubclass(kind, SettingsPart)):
            raise TypeError(f"{model.__name__}.{name} is not a settings part")
        parts[name] = kind
    return parts


def load_settings[T: FunctionSettings | SettingsPart](model: type[T]) -> T:
    """Read and validate ``model`` (a function's settings, or one part) from the environment, once per
    container; every invalid variable of every part is named in one ``ConfigurationError``."""
    return cast("T", _loaded(cast("type[FunctionSettings] | type[SettingsPart]", model)))


@per_container()
def _loaded(model: type[FunctionSettings] | type[SettingsPart]) -> FunctionSettings | SettingsPart:
    if issubclass(model, SettingsPart):
        try:
            return model()
        except ValidationError as error:
            raise ConfigurationError(
                f"invalid configuration for {model.__name__}: {describe_validation_error(error)}"
            ) from error
    parts: dict[str, SettingsPart] = {}
    problems: list[str] = []
    for name, kind in _part_types(model).items():
        try:
            parts[name] = kind()
        except ValidationError as error:
            problems.append(describe_validation_error(error))
    if problems:
        raise ConfigurationError(f"invalid configuration for {model.__name__}: {'; '.join(problems)}")
    return model(**parts)
