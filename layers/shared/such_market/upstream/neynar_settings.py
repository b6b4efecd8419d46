"""Settings of the Neynar API v2 client, a settings part validated at cold start like every other.

``NeynarSettings`` says how to reach Neynar: the API key (``NEYNAR_API_KEY`` locally, or
``NEYNAR_API_KEY_SECRET_ARN`` naming a Secrets Manager secret or an SSM parameter in AWS), the base URL
(``NEYNAR_BASE_URL``, default ``https://api.neynar.com``; the local stub in tests and ``make dev``), the
URL of Neynar's hub HTTP API (``NEYNAR_HUB_URL``, default ``https://hub-api.neynar.com``, where app keys are
looked up, with the same key), and
the bounds of the client: attempts per call, total retry time per call, timeouts. The key is a
``SecretStr``, so it never shows in a repr, a log line or a validation message.

This module imports only pydantic, so a function can validate its settings without paying for httpx.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from such_market.config import SettingsPart
from such_market.secrets import SECRET_REFERENCE_PATTERN, has_secret_source, resolve_secret

DEFAULT_NEYNAR_BASE_URL = "https://api.neynar.com"
DEFAULT_NEYNAR_HUB_URL = "https://hub-api.neynar.com"


class NeynarSettings(SettingsPart):
    """Where the Neynar API is, with which key, and how hard the client tries."""

    neynar_api_key: SecretStr | None = None
    neynar_api_key_secret_arn: str | None = Field(
        default=None,
        pattern=SECRET_REFERENCE_PATTERN,
        description="a Secrets Manager ARN, an SSM parameter ARN, or an SSM parameter name (/…)",
    )
    neynar_base_url: str = Field(
        default=DEFAULT_NEYNAR_BASE_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the API's origin (the local stub, a proxy)",
    )
    neynar_hub_url: str = Field(
        default=DEFAULT_NEYNAR_HUB_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the origin of Neynar's hub HTTP API (app keys of a fid)",
    )
    neynar_max_attempts: int = Field(default=4, ge=1, le=10)
    neynar_retry_budget_seconds: float = Field(default=10.0, gt=0, le=300)
    neynar_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    neynar_read_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if not has_secret_source(self.neynar_api_key, self.neynar_api_key_secret_arn):
            raise ValueError("set NEYNAR_API_KEY or NEYNAR_API_KEY_SECRET_ARN")
        return self

    def resolve_api_key(self) -> str:
        """The API key itself: the plain variable, else the secret it references (cached per container)."""
        return resolve_secret(self.neynar_api_key, self.neynar_api_key_secret_arn, variable="NEYNAR_API_KEY")
