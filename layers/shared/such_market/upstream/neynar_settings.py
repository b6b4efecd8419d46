"""Settings of the Neynar API v2 client, a settings part validated at cold start like every other.

``NeynarSettings`` says how to reach Neynar: the API key (``NEYNAR_API_KEY`` locally, or
``NEYNAR_API_KEY_SECRET_ARN`` naming a Secrets Manager secret or an SSM parameter in AWS), the base URL
(``NEYNAR_BASE_URL``, default ``https://api.neynar.com``; the local stub in tests and ``make dev``), the
URL of Neynar's hub HTTP API (``NEYNAR_HUB_URL``, default ``https://hub-api.neynar.com``, where app keys are
looked up, with the same key), and
the bounds of the client: attempts per call, total retry time per call, timeouts. The key is a
``SecretStr``, so it never shows in a repr, a log line or a validation message.

This module imports only ``such_market.config`` and ``such_market.secrets``, so a function can validate its
settings without paying for httpx (or pydantic).
"""

from __future__ import annotations

from such_market.config import SecretStr, SettingsPart, setting
from such_market.secrets import SECRET_REFERENCE_PATTERN, has_secret_source, resolve_secret

DEFAULT_NEYNAR_BASE_URL = "https://api.neynar.com"
DEFAULT_NEYNAR_HUB_URL = "https://hub-api.neynar.com"


class NeynarSettings(SettingsPart):
    """Where the Neynar API is, with which key, and how hard the client tries."""

    neynar_api_key: SecretStr | None = None
    neynar_api_key_secret_arn: str | None = setting(
        None,
        pattern=SECRET_REFERENCE_PATTERN,
        description="a Secrets Manager ARN, an SSM parameter ARN, or an SSM parameter name (/…)",
    )
    neynar_base_url: str = setting(
        DEFAULT_NEYNAR_BASE_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the API's origin (the local stub, a proxy)",
    )
    neynar_hub_url: str = setting(
        DEFAULT_NEYNAR_HUB_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the origin of Neynar's hub HTTP API (app keys of a fid)",
    )
    neynar_max_attempts: int = setting(4, ge=1, le=10)
    neynar_retry_budget_seconds: float = setting(10.0, gt=0, le=300)
    neynar_connect_timeout_seconds: float = setting(2.0, gt=0, le=30)
    neynar_read_timeout_seconds: float = setting(5.0, gt=0, le=120)

    def validate(self) -> None:
        if not has_secret_source(self.neynar_api_key, self.neynar_api_key_secret_arn):
            raise ValueError("set NEYNAR_API_KEY or NEYNAR_API_KEY_SECRET_ARN")

    def resolve_api_key(self) -> str:
        """The API key itself: the plain variable, else the secret it references (cached per container)."""
        return resolve_secret(self.neynar_api_key, self.neynar_api_key_secret_arn, variable="NEYNAR_API_KEY")
