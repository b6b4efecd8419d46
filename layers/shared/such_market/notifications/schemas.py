"""Request and response models of the notification routes (documentation only: handlers serve bytes)."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from such_market.notifications.rules import MAX_BODY_CHARS, MAX_TARGET_URL_CHARS, MAX_TITLE_CHARS
from such_market.notifications.settings import DEFAULT_MINIAPP_URL
from such_market.notifications.signatures import BASE64URL_PATTERN, MAX_ENVELOPE_PART_CHARS, SIGNATURE_PATTERN
from such_market.schema_base import CamelModel
from such_market.validation import CONTROL_CHARACTERS, MAX_FID

TARGET_URL_PATTERN: Final = rf"^{re.escape(DEFAULT_MINIAPP_URL)}(/[^\s{CONTROL_CHARACTERS}]*)?$"
"""A URL on the mini-app's site (the default ``MINIAPP_URL``; a deployment with another one checks its own)."""
NO_CONTROL_PATTERN: Final = rf"^[^{CONTROL_CHARACTERS}]*$"
"""Text every input may be (``such_market.validation``): no control character."""


class MiniAppEventRequestBody(BaseModel):
    """A JSON Farcaster Signature: base64url header ``{fid, type: "app_key", key}``, payload
    ``{event, notificationDetails?}`` and the Ed25519 signature of ``header.payload``."""

    header: str = Field(min_length=1, max_length=MAX_ENVELOPE_PART_CHARS, pattern=BASE64URL_PATTERN)
    payload: str = Field(min_length=1, max_length=MAX_ENVELOPE_PART_CHARS, pattern=BASE64URL_PATTERN)
    signature: str = Field(pattern=SIGNATURE_PATTERN, description="64 bytes, base64url")


class MiniAppEventReceiptBody(CamelModel):
    """The 200 answer: the event applied for the fid, by the client app. ``replay`` is true for an enable
    whose envelope was applied before (it changes nothing); turning off is applied every time."""

    event: Literal["miniapp_added", "miniapp_removed", "notifications_enabled", "notifications_disabled"]
    fid: int
    app_fid: int
    notifications_enabled: bool
    replay: bool


class AnnouncementRequestBody(CamelModel):
    """An announcement: to the given fids, or to every user with notifications on when ``fids`` is absent."""

    model_config = ConfigDict(extra="forbid")

    fids: list[Annotated[int, Field(ge=1, le=MAX_FID)]] | None = Field(default=None, min_length=1, max_length=10_000)
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, pattern=NO_CONTROL_PATTERN)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, pattern=NO_CONTROL_PATTERN)
    target_url: str = Field(
        max_length=MAX_TARGET_URL_CHARS, pattern=TARGET_URL_PATTERN, description="an https URL on the mini-app's site"
    )


class DeliveryCountsBody(BaseModel):
    """Deliveries of the notification by state."""

    sent: int
    pending: int
    invalid: int
    failed: int
    expired: int


class AnnouncementBody(CamelModel):
    """The 200 answer: the notification's id, how many users and tokens it went to, and where each
    delivery stands (``pending`` ones are held by the per-token rate limits and sent by the scheduled sender)."""

    notification_id: str
    recipients: int
    tokens: int
    deliveries: DeliveryCountsBody
    requests: int
