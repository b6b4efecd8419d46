"""The admin bearer credential: checked by the HTTP API authorizer and again by every admin handler.

Only a SHA-256 digest of the token is kept: in AWS, the Secrets Manager secret named by
``ADMIN_TOKEN_SECRET_ARN`` holds the hex digest (or ``{"sha256": "<hex>"}``); locally ``ADMIN_TOKEN``
holds the token itself and its digest is computed. The presented token is hashed and compared in
constant time, so neither timing nor logs reveal it.

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


def token_digest(token: str) -> str:
    """The hex SHA-256 digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def expected_digest(settings: AdminSettings) -> str:
    """The digest of the valid admin token, from Secrets Manager or the local ``ADMIN_TOKEN``."""
    if settings.admin_token_secret_arn:
        raw = get_secret_string(settings.admin_token_secret_arn).strip()
        if raw.startswith("{"):
            raw = str(orjson.loads(raw).get("sha256", "")).strip()
        digest = raw.lower()
        if not _HEX_DIGEST.match(digest):
            raise ConfigurationError("ADMIN_TOKEN_SECRET_ARN: the secret is not a SHA-256 hex digest")
        return digest
    if not settings.admin_token:
        raise ConfigurationError("set ADMIN_TOKEN_SECRET_ARN (or ADMIN_TOKEN locally)")
    return token_digest(settings.admin_token)


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
