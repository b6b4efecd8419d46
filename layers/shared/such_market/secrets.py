"""Secret values by reference: Secrets Manager / SSM through Powertools parameters, cached per container.

Only this module talks to Secrets Manager and SSM. Values are cached by Powertools for ``max_age``
seconds so a rotated secret is picked up without a redeploy, and they are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from such_market.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import SecretStr

SECRET_MAX_AGE_SECONDS = 300
SECRET_REFERENCE_PATTERN = r"^(arn:aws[\w-]*:(secretsmanager|ssm):\S+|/\S+)$"
"""A Secrets Manager ARN, an SSM parameter ARN, or an SSM parameter name (``/…``)."""


def _plain(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def has_secret_source(plain: SecretStr | None, reference: str | None) -> bool:
    """Whether a secret is given, as a plain (non-blank) value or by reference."""
    return bool(_plain(plain)) or bool(reference)


def resolve_secret(plain: SecretStr | None, reference: str | None, *, variable: str) -> str:
    """The secret itself: the plain variable ``variable``, else the secret ``<variable>_SECRET_ARN``
    references (cached per container); a ``ConfigurationError`` naming both when neither is set."""
    if value := _plain(plain):
        return value
    if reference is None:
        raise ConfigurationError(f"set {variable} or {variable}_SECRET_ARN")
    return get_secret_string(reference).strip()


def get_secret_string(reference: str) -> str:
    """Return the secret named by ``reference`` (a Secrets Manager ARN or an SSM parameter name)."""
    from aws_lambda_powertools.utilities import parameters

    value: Any
    if reference.startswith("arn:") and ":secretsmanager:" in reference:
        value = parameters.get_secret(reference, max_age=SECRET_MAX_AGE_SECONDS)
    else:
        value = parameters.get_parameter(reference, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS)
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"secret {reference.rsplit(':', 1)[-1]} is empty or not a string")
    return value


def get_secret_json(reference: str) -> dict[str, Any]:
    """Return a JSON-object secret (such as the RDS credentials secret) as a dict."""
    raw = get_secret_string(reference)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ConfigurationError("the secret is not a JSON object") from error
    if not isinstance(parsed, dict):
        raise ConfigurationError("the secret is not a JSON object")
    return parsed
