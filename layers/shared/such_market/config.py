"""Settings: one small typed object per function, composed of parts, validated once at cold start.

Each part says how to reach one thing and reads its own variables: ``ServiceSettings`` (service name,
log level), ``DatabaseSettings``, ``CacheSettings``, ``EventSettings``, ``AdminSettings`` here, and the
upstreams' ``AlchemySettings`` and ``NeynarSettings`` beside their clients. A function's settings are a
``FunctionSettings`` whose fields are the parts it needs (composition, not inheritance: two parts can
never shadow each other's methods, so each upstream's client gets its own key and nothing else)::

    class ReadPathSettings(FunctionSettings):
        database: DatabaseSettings
        cache: CacheSettings
        events: EventSettings
        alchemy: AlchemySettings

A part declares its fields with their types and ``setting(default, ge=…, le=…, pattern=…)`` bounds; the
variable of a field is its name in upper case (matched in any case), and an empty variable is an unset
one. A part checks what involves several fields in ``validate`` (raise ``ValueError``). Supported types:
``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` of strings, ``SecretStr`` and ``X | None``.

``load_settings(Model)`` reads the environment once per container, builds every part, and turns all
validation failures into one ``ConfigurationError`` whose message names every offending variable, so a
broken deployment fails at cold start with a message an operator can act on. A part can be loaded
alone too (``load_settings(CacheSettings)``), or built with some fields given (``CacheSettings(redis_url=…)``:
the others come from the environment). ``settings.part(CacheSettings)`` finds a part by type.

This is our own small mechanism rather than ``pydantic_settings`` because it is on every function's cold
path: importing pydantic and pydantic_settings (which pulls asyncio) cost more than the cache client a cached
read needs; this module imports only the standard library.

Secrets are referenced by ARN in AWS (``DB_SECRET_ARN``, ``ADMIN_TOKEN_SECRET_ARN``, …) and given as
plain variables locally (``DATABASE_URL``, ``ADMIN_TOKEN``); ``such_market.secrets`` resolves them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast, dataclass_transform, get_args, get_origin, get_type_hints

from such_market.container import per_container
from such_market.errors import ConfigurationError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class Secret:
    """A secret string: its value only through ``get_secret_value()``, never in a repr, str or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SecretStr = Secret
"""The name settings parts annotate secret fields with (pydantic's, whose interface ``Secret`` keeps)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bounds:
    """What a field's value must satisfy besides its type (pydantic's ``Field`` constraints we use)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    description: str | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` is out of bounds, or ``None`` (the value itself is never quoted: it may be secret)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._number_problem(value)
        text = value.get_secret_value() if isinstance(value, Secret) else value
        return self._text_problem(text) if isinstance(text, str) else None

    def _number_problem(self, value: float) -> str | None:
        if self.ge is not None and not value >= self.ge:
            return f"should be greater than or equal to {self.ge:g}"
        if self.gt is not None and not value > self.gt:
            return f"should be greater than {self.gt:g}"
        if self.le is not None and not value <= self.le:
            return f"should be less than or equal to {self.le:g}"
        return None

    def _text_problem(self, text: str) -> str | None:
        if self.min_length is not None and len(text) < self.min_length:
            return f"should have at least {self.min_length} characters"
        if self.max_length is not None and len(text) > self.max_length:
            return f"should have at most {self.max_length} characters"
        if self.pattern is not None and re.search(self.pattern, text) is None:
            return f"should match pattern '{self.pattern}'"
        return None


_NO_BOUNDS = Bounds()


def setting[T](
    default: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    description: str | None = None,
) -> T:
    """A field of a settings part: its default and bounds (``description`` documents it)."""
    bounds = Bounds(ge, gt, le, pattern, min_length, max_length, description)
    return dataclasses.field(default=default, metadata={"bounds": bounds})


class SettingsError(ConfigurationError):
    """A part (or a function's settings) could not be built; ``problems`` names each bad variable."""

    def __init__(self, model: str, problems: list[str]) -> None:
        super().__init__(f"invalid configuration for {model}: {'; '.join(problems)}")
        self.problems = tuple(problems)


class _SettingsType(type):
    """The metaclass of settings classes: these classes are keys of per-container caches, and with a metaclass
    of their own the type checker sees their class objects as hashable (it does not for a plain class whose
    instances get a synthesized ``__hash__``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    variable: str
    kind: Any  # the annotation without ``| None``
    optional: bool
    default: object
    bounds: Bounds


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
class SettingsPart(metaclass=_SettingsType):
    """One part of a function's settings, read from the environment (variable = field name, any case)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:  # noqa: ANN401 - passed on to object
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True, init=False)(cls)

    def __init__(self, **given: object) -> None:
        """Build the part from ``given`` values and, for the other fields, the environment; a
        ``SettingsError`` names every bad or missing variable."""
        environment = {name.upper(): value for name, value in os.environ.items() if value != ""}
        problems: list[str] = []
        unknown = set(given) - {field.name for field in _fields(type(self))}
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        for field in _fields(type(self)):
            raw = given[field.name] if field.name in given else environment.get(field.variable, field.default)
            value, problem = _converted(field, raw)
            if problem is None and value is not None:
                problem = field.bounds.problem(value)
            if problem is not None:
                problems.append(f"{field.variable}: {problem}")
            object.__setattr__(self, field.name, value)
        if not problems:
            try:
                self.validate()
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise SettingsError(type(self).__name__, problems)

    def validate(self) -> None:
        """Check what involves several fields (raise ``ValueError`` with a message naming the variables)."""


_MISSING = dataclasses.MISSING


@functools.cache  # a pure function of the class: hints are resolved once per part
def _fields(part: type[SettingsPart]) -> tuple[_Field, ...]:
    hints = get_type_hints(part)
    fields: list[_Field] = []
    for field in dataclasses.fields(cast("Any", part)):
        kind = hints[field.name]
        options = get_args(kind) if isinstance(kind, types.UnionType) else ()
        optional = type(None) in options
        if optional:
            (kind,) = (option for option in options if option is not type(None))
        bounds = field.metadata.get("bounds", _NO_BOUNDS)
        fields.append(_Field(field.name, field.name.upper(), kind, optional, field.default, bounds))
    return tuple(fields)


def _converted(field: _Field, raw: object) -> tuple[object, str | None]:
    """``raw`` (a variable's text, a given value or the default) as the field's type, or why not."""
    if raw is _MISSING or (raw is None and not field.optional):
        return None, "is required"
    if raw is None:
        return None, None
    if get_origin(field.kind) is Literal:
        allowed = get_args(field.kind)
        return (raw, None) if raw in allowed else (None, f"should be {' or '.join(map(repr, allowed))}")
    convert, expected = _CONVERTERS.get(field.kind, (_text, "a string"))
    try:
        return convert(raw), None
    except (TypeError, ValueError):
        return None, f"should be {expected}"


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError
    return raw


def _secret(raw: object) -> Secret:
    return raw if isinstance(raw, Secret) else Secret(_text(raw))


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError
    return text in _TRUE


def _integer(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError
    return int(raw)  # a str like "1.5" is refused, as pydantic did


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise TypeError
    return float(raw)


_CONVERTERS: Mapping[object, tuple[Callable[[object], object], str]] = {
    str: (_text, "a string"),
    Secret: (_secret, "a string"),
    bool: (_boolean, "a valid boolean"),
    int: (_integer, "a valid integer"),
    float: (_number, "a valid number"),
}


class ServiceSettings(SettingsPart):
    """Settings every function has: its service name and log level (the Powertools variables)."""

    powertools_service_name: str = "such-market"
    powertools_log_level: LogLevel = "INFO"


class DatabaseSettings(SettingsPart):
    """Where PostgreSQL is: a DSN locally, an RDS secret (through RDS Proxy) in AWS."""

    database_url: str | None = setting(None, pattern=r"^postgres(ql)?://")
    db_secret_arn: str | None = setting(None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    db_host_override: str | None = setting(None, description="host to use instead of the secret's (the RDS Proxy)")
    db_connect_timeout_seconds: int = setting(3, ge=1, le=30)
    db_statement_timeout_ms: int = setting(5000, ge=100, le=600_000)

    def validate(self) -> None:
        if not self.database_url and not self.db_secret_arn:
            raise ValueError("set DATABASE_URL or DB_SECRET_ARN")


class CacheSettings(SettingsPart):
    """Where the Redis-compatible cache is and how it is addressed."""

    redis_url: str | None = setting(None, pattern=r"^rediss?://")
    redis_host: str | None = None
    redis_port: int = setting(6379, ge=1, le=65535)
    redis_tls: bool = True
    redis_auth_secret_arn: str | None = setting(None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    redis_cluster: bool = False
    cache_prefix: str = setting("such-market", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    cache_connect_timeout_ms: int = setting(50, ge=5, le=5000)
    cache_socket_timeout_ms: int = setting(100, ge=5, le=5000)
    cache_analytics: bool = setting(True, description="record traffic analytics (GET /api/admin/cache/metrics)")
    cache_ttl_scale: float = setting(
        1.0, gt=0, le=1, description="multiplies every TTL tier (1 in production; less to study expiry)"
    )

    def validate(self) -> None:
        if not self.redis_url and not self.redis_host:
            raise ValueError("set REDIS_URL or REDIS_HOST")


class EventSettings(SettingsPart):
    """Where events go: the EventBridge bus (and, locally, the endpoint of the local bus)."""

    event_bus_name: str = setting("such-market", pattern=r"^[A-Za-z0-9._\-/:]+$", max_length=256)
    event_source: str = "such-market"
    eventbridge_endpoint_url: str | None = setting(None, pattern=r"^https?://")


class AdminSettings(SettingsPart):
    """How the admin credential is checked: a SHA-256 hash kept in Secrets Manager, or a local token."""

    admin_token_secret_arn: str | None = setting(None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    admin_token: str | None = setting(None, min_length=16)

    def validate(self) -> None:
        if not self.admin_token_secret_arn and not self.admin_token:
            raise ValueError("set ADMIN_TOKEN_SECRET_ARN (or ADMIN_TOKEN locally)")


@dataclass_transform(kw_only_default=True, frozen_default=True)
class FunctionSettings(metaclass=_SettingsType):
    """A function's settings: its fields are the parts it needs (see the module doc)."""

    service: ServiceSettings

    def __init_subclass__(cls, **kwargs: Any) -> None:  # noqa: ANN401 - passed on to object
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)

    @classmethod
    def parts(cls) -> Mapping[str, type[SettingsPart]]:
        """The part type of each field; a field that is not a part is a ``TypeError`` naming it."""
        return _part_types(cls)

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


dataclasses.dataclass(frozen=True, kw_only=True)(FunctionSettings)


@functools.cache  # a pure function of two classes: it runs on every request, so it is looked up once
def _field_holding(model: type[FunctionSettings], kind: type[SettingsPart]) -> str | None:
    """The field of ``model`` whose part is a ``kind``, if any."""
    for name, part in _part_types(model).items():
        if issubclass(part, kind):
            return name
    return None


@functools.cache  # a pure function of the class
def _part_types(model: type[FunctionSettings]) -> Mapping[str, type[SettingsPart]]:
    hints = get_type_hints(model)
    parts: dict[str, type[SettingsPart]] = {}
    for field in dataclasses.fields(cast("Any", model)):
        kind = hints[field.name]
        if not (isinstance(kind, type) and issubclass(kind, SettingsPart)):
            raise TypeError(f"{model.__name__}.{field.name} is not a settings part")
        parts[field.name] = kind
    return types.MappingProxyType(parts)


def load_settings[T: FunctionSettings | SettingsPart](model: type[T]) -> T:
    """Read and validate ``model`` (a function's settings, or one part) from the environment, once per
    container; every invalid variable of every part is named in one ``ConfigurationError``."""
    return cast("T", _loaded(cast("type[FunctionSettings] | type[SettingsPart]", model)))


@per_container()
def _loaded(model: type[FunctionSettings] | type[SettingsPart]) -> FunctionSettings | SettingsPart:
    if issubclass(model, SettingsPart):
        return model()
    parts: dict[str, SettingsPart] = {}
    problems: list[str] = []
    for name, kind in _part_types(model).items():
        try:
            parts[name] = kind()
        except SettingsError as error:
            problems.extend(error.problems)
    if problems:
        raise SettingsError(model.__name__, problems)
    return model(**parts)
