"""Secret values by reference: Secrets Manager / SSM through Powertools parameters, cached per container.

Only this module talks to Secrets Manager and SSM. Values are cached by Powertools for ``max_age``
seconds so a rotated secret is picked up without a redeploy, and they are never logged.
"""

from __future__ import annotations

from typing import Any

import orjson

from such_market.errors import ConfigurationError

SECRET_MAX_AGE_SECONDS = 300


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
