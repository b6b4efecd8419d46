"""Settings of the upstream clients, a settings part validated at cold start like every other.

``AlchemySettings`` says how to reach the Alchemy NFT API v3: the API key (``ALCHEMY_API_KEY``
locally, or ``ALCHEMY_API_KEY_SECRET_ARN`` naming a Secrets Manager secret or an SSM parameter in AWS),
the base URL (``ALCHEMY_BASE_URL``, to point at the local stub) and network (``ALCHEMY_NETWORK``), and
the bounds of the client: attempts per call, total retry time per call, pages per listing, timeouts.
The key is a ``SecretStr``, so it never shows in a repr, a log line or a validation message.

This module imports only ``such_market.config`` and ``such_market.secrets``, so a function can validate its
settings without paying for httpx (or pydantic).
"""

from __future__ import annotations

from such_market.config import SecretStr, SettingsPart, setting
from such_market.secrets import SECRET_REFERENCE_PATTERN, has_secret_source, resolve_secret

DEFAULT_ALCHEMY_NETWORK = "base-mainnet"


class AlchemySettings(SettingsPart):
    """Where the Alchemy NFT API is, with which key, and how hard the client tries."""

    alchemy_api_key: SecretStr | None = None
    alchemy_api_key_secret_arn: str | None = setting(
        None,
        pattern=SECRET_REFERENCE_PATTERN,
        description="a Secrets Manager ARN, an SSM parameter ARN, or an SSM parameter name (/…)",
    )
    alchemy_base_url: str | None = setting(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="replaces https://{network}.g.alchemy.com (the local stub, a proxy)",
    )
    alchemy_network: str = setting(DEFAULT_ALCHEMY_NETWORK, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    alchemy_max_attempts: int = setting(4, ge=1, le=10)
    alchemy_retry_budget_seconds: float = setting(20.0, gt=0, le=300)
    alchemy_max_pages: int = setting(2000, ge=1, le=100_000)
    alchemy_connect_timeout_seconds: float = setting(2.0, gt=0, le=30)
    alchemy_read_timeout_seconds: float = setting(10.0, gt=0, le=120)

    def validate(self) -> None:
        if not has_secret_source(self.alchemy_api_key, self.alchemy_api_key_secret_arn):
            raise ValueError("set ALCHEMY_API_KEY or ALCHEMY_API_KEY_SECRET_ARN")

    def resolve_api_key(self) -> str:
        """The API key itself: the plain variable, else the secret it references (cached per container)."""
        return resolve_secret(self.alchemy_api_key, self.alchemy_api_key_secret_arn, variable="ALCHEMY_API_KEY")
