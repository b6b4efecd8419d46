"""Settings of the notification functions, a settings part validated at cold start like every other.

``NotificationSettings`` says where the mini-app lives (``MINIAPP_URL``: every ``targetUrl`` must be on
its host, and transfer notifications link to its token pages), how long transfers of one user are
collected into one notification (``NOTIFICATION_DIGEST_SECONDS``), and the bounds of the client that
posts to the Farcaster clients' notification URLs: timeouts, attempts per request and per delivery.

The notification URLs come from signed events, that is from any Farcaster account: only ``https`` URLs
on a host name (no IP literal, no ``localhost``) are accepted, so the functions cannot be pointed at
the VPC. ``NOTIFICATION_ALLOW_HTTP=true`` lifts that for the local client stub (``make dev``, tests).
"""

from __future__ import annotations

from pydantic import Field

from such_market.config import SettingsPart

DEFAULT_MINIAPP_URL = "https://such.market"


class NotificationSettings(SettingsPart):
    """Where the mini-app is, how transfers are collected, and how hard the notification client tries."""

    miniapp_url: str = Field(
        default=DEFAULT_MINIAPP_URL,
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/[^\s?#]*)?$",
        description="the mini-app's base URL: targetUrls must be on its host",
    )
    notification_digest_seconds: float = Field(default=10.0, ge=0, le=600)
    notification_allow_http: bool = False
    notification_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    notification_read_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    notification_request_attempts: int = Field(default=2, ge=1, le=5)
    notification_max_delivery_attempts: int = Field(default=8, ge=1, le=50)
