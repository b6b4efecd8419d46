"""Settings of the notification functions, a settings part validated at cold start like every other.

``NotificationSettings`` says where the mini-app lives (``MINIAPP_URL``: every ``targetUrl`` must be on
its host, and transfer notifications link to its token pages), how long transfers of one user are
collected into one notification (``NOTIFICATION_DIGEST_SECONDS``), and the bounds of the client that
posts to the Farcaster clients' notification URLs: timeouts, attempts per request and per delivery.

The notification URLs come from signed events, that is from any Farcaster account: only ``https`` URLs
on a host name (no IP literal, no ``localhost``) are accepted, and connections go only to public addresses
(``notifications.addresses``), so the functions cannot be pointed at the VPC.
``NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB=true`` lets them post to the local client stub instead
(plain http, loopback addresses; never private or link-local ones): ``make dev`` and the tests set it, the
template never does, and a deployed function (``AWS_LAMBDA_FUNCTION_NAME`` set, not under ``sam local``)
refuses to start with it.
"""

from __future__ import annotations

import os

from such_market.config import SettingsPart, setting

DEFAULT_MINIAPP_URL = "https://such.market"


class NotificationSettings(SettingsPart):
    """Where the mini-app is, how transfers are collected, and how hard the notification client tries."""

    miniapp_url: str = setting(
        DEFAULT_MINIAPP_URL,
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/[^\s?#]*)?$",
        description="the mini-app's base URL: targetUrls must be on its host",
    )
    notification_digest_seconds: float = setting(10.0, ge=0, le=600)
    notification_allow_loopback_for_local_stub: bool = setting(
        False, description="make dev and tests only: post to the local client stub over http on loopback"
    )
    notification_connect_timeout_seconds: float = setting(2.0, gt=0, le=30)
    notification_read_timeout_seconds: float = setting(5.0, gt=0, le=60)
    notification_request_attempts: int = setting(2, ge=1, le=5)
    notification_max_delivery_attempts: int = setting(8, ge=1, le=50)

    def validate(self) -> None:
        deployed = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and os.environ.get("AWS_SAM_LOCAL") != "true"
        if self.notification_allow_loopback_for_local_stub and deployed:
            raise ValueError(
                "NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB is for make dev and tests only; a deployed function"
                " never posts to loopback"
            )
