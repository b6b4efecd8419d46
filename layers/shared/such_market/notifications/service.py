"""The notification use cases: the mini-app webhook, transfers as news, the sender, admin announcements.

- ``receive_miniapp_event`` (``POST /api/webhook``): in this order, so nothing unauthenticated is
  parsed further or stored — the JSON Farcaster Signature envelope (malformed → 400 ``invalid_envelope``),
  the Ed25519 signature (401 ``invalid_signature``), the header's key as an active app key of its fid
  through Neynar (401 ``invalid_app_key``; a lookup Neynar must answer is throttled per source IP, per
  fid and overall: 429 ``app_key_lookups_rate_limited`` with Retry-After), only then the payload (400
  ``invalid_event``). The event and its token change commit together. ``miniapp_added``/
  ``notifications_enabled`` with details store or re-enable the token of (fid, client URL), once per
  envelope: the envelope's digest makes a replayed enable a no-op (``replay: true``), so it cannot
  revive a token turned off since.
  ``miniapp_removed``/``notifications_disabled`` disable the tokens that client (the app fid) gave, every
  time they arrive: signatures are deterministic and the payload has no nonce, so a user's second genuine
  opt-out is byte-identical to the first and must not be mistaken for a replay. A user who turns
  notifications on is looked up (Neynar, stored in ``fc_users`` with their verified wallets) so transfers
  of their wallets reach them; that lookup is best effort.
- ``record_transfer_news`` (``nft.transferred``): for each user with notifications on who verified the
  sending or the receiving wallet (not both: a move between one's own wallets is no news), the transfer
  joins the user's open digest, whose ``notificationId`` is ``transfer-<eventId>-<fid>`` of the event
  that opened it; a redelivered event is recognized by (event, fid) and adds nothing. Re-org reversals
  (``removed``) are not news.
- ``run_sender``: one run of ``sending.send_due``.
- ``send_announcement`` (``POST /api/admin/notifications/send``): one ``announcement-<uuid>``
  notification to every enabled token of ``fids`` (of everyone when absent), sent at once within a
  budget; what the rate limits hold back is sent by the scheduled sender.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from such_market.cache.keys import CacheKeys
from such_market.config import (
    AdminSettings,
    CacheSettings,
    DatabaseSettings,
    EventSettings,
    FunctionSettings,
)
from such_market.errors import BadRequestError, UnauthorizedError
from such_market.notifications.app_keys import app_fid_of
from such_market.notifications.queries import delivery_states, fids_with_tokens, transfer_recipients
from such_market.notifications.rules import Message, acceptable_client_url
from such_market.notifications.sending import SendReport, send_due
from such_market.notifications.settings import NotificationSettings
from such_market.notifications.signatures import (
    InvalidSignatureError,
    MalformedSignatureError,
    parse_envelope,
    verify,
)
from such_market.notifications.writes import (
    DisabledReason,
    TransferNews,
    create_announcement,
    disable_client_tokens,
    enable_token,
    queue_notification,
    record_transfer,
    record_webhook_event,
)
from such_market.observability import logger
from such_market.upstream.neynar_settings import NeynarSettings
from such_market.validation import MAX_FID, parse_json_object, reject_control_characters

if TYPE_CHECKING:
    import psycopg

    from such_market.cache.client import CacheClient
    from such_market.cache.store import ReadThroughCache
    from such_market.events.models import NftTransferred  # pydantic: loaded by the consumer that parses it
    from such_market.notifications.client import NotificationClient
    from such_market.upstream.neynar import NeynarClient

    Connection = psycopg.Connection[tuple[Any, ...]]

EventName = Literal["miniapp_added", "miniapp_removed", "notifications_enabled", "notifications_disabled"]
_LEGACY_NAMES: Final = {"frame_added": "miniapp_added", "frame_removed": "miniapp_removed"}
_EVENTS: Final[tuple[EventName, ...]] = (
    "miniapp_added",
    "miniapp_removed",
    "notifications_enabled",
    "notifications_disabled",
)
_TURNING_OFF: Final[dict[str, DisabledReason]] = {
    "miniapp_removed": "miniapp_removed",
    "notifications_disabled": "notifications_disabled",
}
"""Events that disable the client's tokens, with the reason recorded: applied every time they arrive."""
MAX_WEBHOOK_BODY_BYTES: Final = 64 * 1024
MAX_ADMIN_BODY_BYTES: Final = 64 * 1024
MAX_ANNOUNCEMENT_FIDS: Final = 10_000
ANNOUNCEMENT_SEND_BUDGET_SECONDS: Final = 8.0


class MiniAppWebhookSettings(FunctionSettings):
    """The mini-app webhook: the tokens' database, the app-key cache, Neynar, and the bus (profiles)."""

    database: DatabaseSettings
    cache: CacheSettings
    events: EventSettings
    neynar: NeynarSettings
    notifications: NotificationSettings


class TransferNotifierSettings(FunctionSettings):
    """The ``nft.transferred`` consumer: the database, and the cache for its idempotency records."""

    database: DatabaseSettings
    cache: CacheSettings
    notifications: NotificationSettings


class NotificationSenderSettings(FunctionSettings):
    """The scheduled sender."""

    database: DatabaseSettings
    notifications: NotificationSettings


class AdminNotificationSettings(FunctionSettings):
    """The admin announcement route."""

    database: DatabaseSettings
    admin: AdminSettings
    notifications: NotificationSettings


# -- receive ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MiniAppEvent:
    """A verified event's payload: its name and, for added/enabled, the notification details."""

    event: EventName
    url: str | None = None
    token: str | None = None


def _event_name(text: str) -> EventName:
    name = _LEGACY_NAMES.get(text, text)
    for known in _EVENTS:
        if name == known:
            return known
    raise BadRequestError("unknown mini-app event", code="invalid_event")


def parse_event(payload: bytes, *, allow_local_stub: bool) -> MiniAppEvent:
    """The (verified) payload as an event; ``BadRequestError`` (400 ``invalid_event``) when it is not one."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadRequestError("the event payload is not JSON", code="invalid_event") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise BadRequestError("the event payload has no event name", code="invalid_event")
    reject_control_characters(raw, field="event payload", code="invalid_event")
    name = _event_name(raw["event"])
    details = raw.get("notificationDetails")
    if details is None and name != "notifications_enabled":
        return MiniAppEvent(event=name)
    if name in {"miniapp_removed", "notifications_disabled"}:
        return MiniAppEvent(event=name)
    if not isinstance(details, dict):
        raise BadRequestError("notificationDetails must be {url, token}", code="invalid_event")
    url, token = details.get("url"), details.get("token")
    if not isinstance(url, str) or not isinstance(token, str) or not 0 < len(token) <= 1024:
        raise BadRequestError("notificationDetails must be {url, token}", code="invalid_event")
    if not acceptable_client_url(url, allow_local_stub=allow_local_stub):
        raise BadRequestError("the notification url is not an acceptable https URL", code="invalid_event")
    return MiniAppEvent(event=name, url=url, token=token)


def receive_miniapp_event(
    *,
    body: bytes,
    neynar: Callable[[], NeynarClient],
    cache: Callable[[], CacheClient],
    keys: CacheKeys,
    connect: Callable[[], Connection],
    settings: NotificationSettings,
    learn_user: Callable[[int], object],
    throttle: Callable[[], ReadThroughCache] | None = None,
    source_ip: str | None = None,
) -> dict[str, object]:
    """Verify and apply one signed mini-app event (see the module doc); the 200 answer's body. Neynar
    lookups are throttled per ``source_ip``, per fid and overall through ``throttle`` (429 past them)."""
    if len(body) > MAX_WEBHOOK_BODY_BYTES:
        raise BadRequestError("the request body is too large", code="invalid_envelope")
    try:
        envelope = parse_envelope(body)
        verify(envelope)
    except MalformedSignatureError as error:
        raise BadRequestError(f"not a JSON Farcaster Signature: {error}", code="invalid_envelope") from None
    except InvalidSignatureError as error:
        raise UnauthorizedError(str(error), code="invalid_signature") from None
    app_fid = app_fid_of(
        neynar=neynar(),
        cache=cache(),
        keys=keys,
        fid=envelope.fid,
        key=envelope.key,
        throttle=None if throttle is None else throttle(),
        source=source_ip,
    )
    if app_fid is None:
        raise UnauthorizedError("the signing key is not an active app key of the fid", code="invalid_app_key")
    try:
        payload = envelope.payload_bytes()
    except ValueError:
        raise BadRequestError("the event payload is not base64url", code="invalid_event") from None
    event = parse_event(payload, allow_local_stub=settings.notification_allow_loopback_for_local_stub)
    conn = connect()
    with conn.transaction():
        first = record_webhook_event(
            conn=conn, digest=envelope.digest, fid=envelope.fid, app_fid=app_fid, event=event.event
        )
        # Ed25519 is deterministic and the payload has no nonce: a user's second genuine opt-out is
        # byte-identical to their first. Turning off is therefore applied every time it arrives (a replayed
        # one only turns off what its signer may turn off); only an old enable is kept from reviving a token.
        if event.event in _TURNING_OFF:
            disable_client_tokens(conn=conn, fid=envelope.fid, app_fid=app_fid, reason=_TURNING_OFF[event.event])
        elif first and event.url is not None and event.token is not None:
            enable_token(conn=conn, fid=envelope.fid, url=event.url, token=event.token, app_fid=app_fid)
    enabled = event.token is not None
    if first and enabled:
        learn_user(envelope.fid)
    return {
        "event": event.event,
        "fid": envelope.fid,
        "appFid": app_fid,
        "notificationsEnabled": enabled,
        "replay": not first and event.event not in _TURNING_OFF,
    }


# -- transfers as news ---------------------------------------------------------------------------------
def transfer_notification_id(event_id: str, fid: int) -> str:
    """The stable id of the notification a transfer event opens for ``fid``."""
    return f"transfer-{event_id}-{fid}"


def record_transfer_news(*, conn: Connection, detail: NftTransferred, collect_seconds: float) -> dict[str, int]:
    """Add the transfer to the digest of every user it concerns (see the module doc)."""
    if detail.removed or detail.from_ == detail.to:
        return {"recipients": 0, "recorded": 0}
    recipients = [
        recipient
        for recipient in transfer_recipients(conn=conn, sender=detail.from_, receiver=detail.to)
        if recipient.sent != recipient.received
    ]
    recorded = 0
    for recipient in recipients:
        news = TransferNews(
            event_id=detail.event_id,
            fid=recipient.fid,
            direction="received" if recipient.received else "sent",
            contract_address=detail.contract_address,
            token_id=int(detail.token_id),
            counterparty=detail.from_ if recipient.received else detail.to,
            block_number=detail.block_number,
            log_index=detail.log_index,
        )
        notification_id = transfer_notification_id(detail.event_id, recipient.fid)
        with conn.transaction():
            recorded += record_transfer(
                conn=conn, news=news, notification_id=notification_id, collect_seconds=collect_seconds
            )
    return {"recipients": len(recipients), "recorded": recorded}


# -- sending -------------------------------------------------------------------------------------------
def run_sender(
    *, conn: Connection, client: NotificationClient, settings: NotificationSettings, time_budget_seconds: float
) -> SendReport:
    """One run of the sender."""
    return send_due(
        conn=conn,
        client=client,
        base_url=settings.miniapp_url,
        max_delivery_attempts=settings.notification_max_delivery_attempts,
        time_budget_seconds=time_budget_seconds,
    )


@dataclass(frozen=True, slots=True)
class Announcement:
    """A validated admin request."""

    fids: tuple[int, ...] | None
    message: Message


def parse_announcement(body: str | bytes | None, *, base_url: str) -> Announcement:
    """``{fids?, title, body, targetUrl}`` → ``Announcement``; 400 for anything else."""
    payload = parse_json_object(
        body,
        max_bytes=MAX_ADMIN_BODY_BYTES,
        shape="{fids?, title, body, targetUrl}",
        fields=("fids", "title", "body", "targetUrl"),
    )
    fids = payload.get("fids")
    if isinstance(fids, list):  # JSON does not tell 7 from 7.0: an integral number is an integer
        fids = [int(fid) if isinstance(fid, float) and fid.is_integer() else fid for fid in fids]
    if fids is not None and (
        not isinstance(fids, list)
        or not 0 < len(fids) <= MAX_ANNOUNCEMENT_FIDS
        or not all(isinstance(fid, int) and not isinstance(fid, bool) and 0 < fid <= MAX_FID for fid in fids)
    ):
        raise BadRequestError(
            f"fids must be a list of 1 to {MAX_ANNOUNCEMENT_FIDS} positive integers", code="invalid_fids"
        )
    title, text, target = payload.get("title"), payload.get("body"), payload.get("targetUrl")
    if not all(isinstance(value, str) for value in (title, text, target)):
        raise BadRequestError("title, body and targetUrl are required strings", code="invalid_notification")
    try:
        message = Message(title=str(title), body=str(text), target_url=str(target)).check(base_url)
    except ValueError as error:
        raise BadRequestError(str(error), code="invalid_notification") from None
    return Announcement(fids=None if fids is None else tuple(dict.fromkeys(fids)), message=message)


def send_announcement(
    *,
    conn: Connection,
    client: NotificationClient,
    settings: NotificationSettings,
    announcement: Announcement,
    time_budget_seconds: float = ANNOUNCEMENT_SEND_BUDGET_SECONDS,
) -> dict[str, object]:
    """Queue the announcement for its recipients and send what the limits allow now (see the module doc)."""
    notification_id = f"announcement-{uuid.uuid4()}"
    fids: Sequence[int] | None = announcement.fids
    with conn.transaction():
        pk = create_announcement(conn=conn, notification_id=notification_id)
        queued = queue_notification(conn=conn, pk=pk, message=announcement.message, fids=fids)
        recipients = fids_with_tokens(conn=conn, fids=fids)
    report = run_sender(conn=conn, client=client, settings=settings, time_budget_seconds=time_budget_seconds)
    states = delivery_states(conn=conn, pk=pk)
    logger.info("announcement sent", extra={"notification_id": notification_id, "tokens": queued, **states})
    return {
        "notificationId": notification_id,
        "recipients": len(recipients),
        "tokens": queued,
        "deliveries": {state: states.get(state, 0) for state in ("sent", "pending", "invalid", "failed", "expired")},
        "requests": report.requests,
    }
