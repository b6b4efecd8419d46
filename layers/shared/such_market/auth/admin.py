"""The admin bearer credential: checked by the HTTP API authorizer and again by every admin handler.

In AWS the Secrets Manager secret named by ``ADMIN_TOKEN_SECRET_ARN`` holds either the token's SHA-256
hex digest (plain, or ``{"sha256": "<hex>"}``), or the token itself (plain, or ``{"token": "<token>"}``):
the stack generates its token with ``GenerateSecretString`` (48 letters and digits), and an operator reads
it from the same secret. A plain value of exactly 64 hex digits is a digest; any other plain value is the
token (at least ``MIN_TOKEN_LENGTH`` characters). Locally ``ADMIN_TOKEN`` holds the token. Either way the
comparison is between digests: the presented token is hashed and compared in constant time, so neither
timing nor logs reveal it.

No ``Authorization`` header (or not a bearer one) → ``UnauthorizedError`` (401); a bearer token
that does not match → ``ForbiddenError`` (403).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

import orjson

from such_market.config import AdminSettings
from such_market.errors import ConfigurationError, ForbiddenError, UnauthorizedError
from such_market.secrets import get_secret_string

_BEARER = re.compile(r"^\s*Bearer\s+(?P<token>\S+)\s*$", re.IGNORECASE)
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MIN_TOKEN_LENGTH = 16
"""A secret holding the token itself must hold at least this many characters (``ADMIN_TOKEN``'s bound)."""


def token_digest(token: str) -> str:
    """The hex SHA-256 digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def expected_digest(settings: AdminSettings) -> str:
    """The digest of the valid admin token, from Secrets Manager or the local ``ADMIN_TOKEN``."""
    if settings.admin_token_secret_arn:
        return stored_digest(get_secret_string(settings.admin_token_secret_arn))
    if not settings.admin_token:
        raise ConfigurationError("set ADMIN_TOKEN_SECRET_ARN (or ADMIN_TOKEN locally)")
    return token_digest(settings.admin_token)


def stored_digest(raw: str) -> str:
    """The digest that the admin secret's value ``raw`` stands for (the forms are in the module doc)."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            stored = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigurationError("ADMIN_TOKEN_SECRET_ARN: the secret is not valid JSON") from None
        if isinstance(stored, dict) and isinstance(stored.get("token"), str):
            return _digest_of_stored_token(stored["token"])
        raw = str(stored.get("sha256", "") if isinstance(stored, dict) else "").strip()
        if not _HEX_DIGEST.match(raw.lower()):
            raise ConfigurationError('ADMIN_TOKEN_SECRET_ARN: the secret holds neither "sha256" nor "token"')
        return raw.lower()
    if _HEX_DIGEST.match(raw.lower()):
        return raw.lower()
    return _digest_of_stored_token(raw)


def _digest_of_stored_token(token: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        # A short token is guessable; the message never quotes the secret.
        raise ConfigurationError(f"ADMIN_TOKEN_SECRET_ARN: the token is shorter than {MIN_TOKEN_LENGTH} characters")
    return token_digest(token)


def bearer_token(headers: Mapping[str, str] | None) -> str:
    """The bearer token of ``headers`` (any header case); 401 when there is none."""
    value = None
    for name, header_value in (headers or {}).items():
        if name.lower() == "authorization":
            value = header_value
            break
    if not value:
        raise UnauthorizedError("admin credential required", code="missing_credentials")
    match = _BEARER.match(value)
    if match is None:
        raise UnauthorizedError("use an 'Authorization: Bearer <token>' header", code="missing_credentials")
    return match["token"]


def authenticate(headers: Mapping[str, str] | None, settings: AdminSettings) -> None:
    """Raise 401/403 unless ``headers`` carry the valid admin bearer token."""
    token = bearer_token(headers)
    if not hmac.compare_digest(token_digest(token), expected_digest(settings)):
        raise ForbiddenError("invalid admin credential", code="invalid_credentials")
