"""Writes of the notification tables (migration 0013): tokens, received events, digests, deliveries, attempts.

Every function is keyword-only and takes a psycopg connection; callers that need several writes to
commit together open the transaction. The sender's queue is ``notification_deliveries``:
``claim_deliveries`` takes due deliveries whose tokens Farcaster's limits allow (1 per 30 s, 100 per
day, not rate limited by the client), at most one per token and each token locked while it is claimed,
so two senders never pick the same token at once; claiming leases the token (``claimed_until``) and
moves the delivery's ``next_attempt_at`` a lease ahead, so a sender that dies mid-send leaves it to be
retried once the lease ends (the client deduplicates on the notification id). Only a send the client
accepted counts against the token's limits (``mark_sent``): a claimed but unsent delivery costs its
token nothing. Tokens of a client URL that is backed off (``back_off_url``) are not claimed. The outcome
of each request then settles its deliveries: sent, invalid (token disabled), rescheduled, failed or
expired; settling releases the tokens' lease. A fid keeps at most ``MAX_CLIENT_URLS_PER_FID`` enabled
client URLs: enabling one more supersedes its oldest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from such_market.notifications.rules import (
    DEDUPLICATION_WINDOW,
    MAX_CLIENT_URLS_PER_FID,
    TOKEN_DAILY_LIMIT,
    TOKEN_MIN_INTERVAL,
    Message,
)

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

Direction = Literal["received", "sent"]
DisabledReason = Literal["miniapp_removed", "notifications_disabled", "invalid_token", "superseded"]
CLAIM_LEASE_SECONDS: Final = 120


# -- tokens and received events ----------------------------------------------------------------------
def record_webhook_event(*, conn: Connection, digest: bytes, fid: int, app_fid: int, event: str) -> bool:
    """Remember a verified event by the digest of its envelope; ``False`` when it was seen before (a replay)."""
    row = conn.execute(
        "INSERT INTO notification_webhook_events (envelope_sha256, fid, app_fid, event)"
        " VALUES (%(digest)s, %(fid)s, %(app_fid)s, %(event)s) ON CONFLICT DO NOTHING RETURNING 1",
        {"digest": digest, "fid": fid, "app_fid": app_fid, "event": event},
    ).fetchone()
    return row is not None


_ENABLE_TOKEN = """
INSERT INTO notification_tokens AS t (fid, url, token, app_fid)
VALUES (%(fid)s, %(url)s, %(token)s, %(app_fid)s)
ON CONFLICT (fid, url) DO UPDATE SET
    token = EXCLUDED.token,
    app_fid = EXCLUDED.app_fid,
    added_at = CASE WHEN t.enabled AND t.token = EXCLUDED.token THEN t.added_at ELSE now() END,
    enabled = true,
    disabled_at = NULL,
    disabled_reason = NULL,
    -- a new token starts with Farcaster's limits untouched
    last_used_at = CASE WHEN t.token = EXCLUDED.token THEN t.last_used_at END,
    day_started_at = CASE WHEN t.token = EXCLUDED.token THEN t.day_started_at END,
    day_count = CASE WHEN t.token = EXCLUDED.token THEN t.day_count ELSE 0 END,
    rate_limited_until = CASE WHEN t.token = EXCLUDED.token THEN t.rate_limited_until END
"""


_SUPERSEDE_OLDEST = """
UPDATE notification_tokens SET enabled = false, disabled_at = now(), disabled_reason = 'superseded'
WHERE id IN (
    SELECT id FROM notification_tokens WHERE fid = %(fid)s AND enabled
    ORDER BY added_at DESC, id DESC OFFSET %(keep)s
)
"""


def enable_token(*, conn: Connection, fid: int, url: str, token: str, app_fid: int) -> int:
    """Store (or replace and re-enable) the token a client gave for ``fid`` at ``url``; beyond
    ``MAX_CLIENT_URLS_PER_FID`` enabled URLs the fid's oldest are superseded (how many were)."""
    with conn.transaction():
        # One fid's enables take turns, so two at once cannot both stay under the bound.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('such_market.notification_tokens.fid', %(fid)s))",
            {"fid": fid},
        )
        conn.execute(_ENABLE_TOKEN, {"fid": fid, "url": url, "token": token, "app_fid": app_fid})
        return conn.execute(_SUPERSEDE_OLDEST, {"fid": fid, "keep": MAX_CLIENT_URLS_PER_FID}).rowcount


def disable_client_tokens(*, conn: Connection, fid: int, app_fid: int, reason: DisabledReason) -> int:
    """Disable the enabled tokens the client ``app_fid`` gave for ``fid``; how many were."""
    cursor = conn.execute(
        "UPDATE notification_tokens SET enabled = false, disabled_at = now(), disabled_reason = %(reason)s"
        " WHERE fid = %(fid)s AND app_fid = %(app_fid)s AND enabled",
        {"fid": fid, "app_fid": app_fid, "reason": reason},
    )
    return cursor.rowcount


# -- transfer digests --------------------------------------------------------------------------------
_RECORD_TRANSFER = """
WITH seen AS (
    SELECT 1 FROM notification_transfers WHERE event_id = %(event_id)s AND fid = %(fid)s
), digest AS (
    INSERT INTO notifications (notification_id, kind, fid, state, send_after)
    SELECT %(notification_id)s, 'transfer', %(fid)s, 'collecting', now() + make_interval(secs => %(collect)s)
    WHERE NOT EXISTS (SELECT 1 FROM seen)
    ON CONFLICT (fid) WHERE kind = 'transfer' AND state = 'collecting' DO UPDATE SET updated_at = now()
    RETURNING id
)
INSERT INTO notification_transfers (event_id, fid, notification_pk, direction, contract_address, token_id,
                                    counterparty, block_number, log_index)
SELECT %(event_id)s, %(fid)s, id, %(direction)s, %(contract)s, %(token_id)s, %(counterparty)s, %(block)s,
       %(log_index)s
FROM digest
ON CONFLICT (event_id, fid) DO NOTHING
RETURNING notification_pk
"""


@dataclass(frozen=True, slots=True)
class TransferNews:
    """One transfer as news for one user."""

    event_id: str
    fid: int
    direction: Direction
    contract_address: str
    token_id: int
    counterparty: str
    block_number: int
    log_index: int


def record_transfer(*, conn: Connection, news: TransferNews, notification_id: str, collect_seconds: float) -> bool:
    """Add ``news`` to the fid's open digest (opening one, named ``notification_id``, due in
    ``collect_seconds``); ``False`` when this (event, fid) was recorded before."""
    row = conn.execute(
        _RECORD_TRANSFER,
        {
            "event_id": news.event_id,
            "fid": news.fid,
            "notification_id": notification_id,
            "collect": collect_seconds,
            "direction": news.direction,
            "contract": news.contract_address,
            "token_id": news.token_id,
            "counterparty": news.counterparty,
            "block": news.block_number,
            "log_index": news.log_index,
        },
    ).fetchone()
    return row is not None


def claim_due_digests(*, conn: Connection, limit: int) -> list[tuple[int, int]]:
    """Lock up to ``limit`` open digests whose collection time is over: ``[(notification pk, fid)]``.
    Call inside a transaction that queues them (``queue_digest``)."""
    rows = conn.execute(
        "SELECT id, fid FROM notifications WHERE kind = 'transfer' AND state = 'collecting' AND send_after <= now()"
        " ORDER BY send_after LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
        {"limit": limit},
    ).fetchall()
    return [(int(pk), int(fid)) for pk, fid in rows]


_QUEUE = """
WITH queued AS (
    UPDATE notifications SET state = 'queued', title = %(title)s, body = %(body)s, target_url = %(target_url)s
    WHERE id = %(pk)s
    RETURNING id
)
INSERT INTO notification_deliveries (notification_pk, token_pk)
SELECT queued.id, t.id
FROM queued JOIN notification_tokens AS t ON t.enabled AND (%(all)s OR t.fid = ANY(%(fids)s::bigint[]))
ON CONFLICT DO NOTHING
"""


def queue_notification(*, conn: Connection, pk: int, message: Message, fids: Sequence[int] | None) -> int:
    """Give notification ``pk`` its message and a pending delivery for every enabled token of ``fids``
    (every enabled token when ``None``); how many deliveries were queued."""
    cursor = conn.execute(
        _QUEUE,
        {
            "pk": pk,
            "title": message.title,
            "body": message.body,
            "target_url": message.target_url,
            "all": fids is None,
            "fids": list(fids or ()),
        },
    )
    return cursor.rowcount


def create_announcement(*, conn: Connection, notification_id: str) -> int:
    """A new announcement (queued by ``queue_notification``); its pk."""
    row = conn.execute(
        "INSERT INTO notifications (notification_id, kind, state, title, body, target_url)"
        " VALUES (%(id)s, 'announcement', 'collecting', NULL, NULL, NULL) RETURNING id",
        {"id": notification_id},
    ).fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return int(row[0])


# -- deliveries ---------------------------------------------------------------------------------------
_MIN_INTERVAL_SECONDS: Final = int(TOKEN_MIN_INTERVAL.total_seconds())
_TOKEN_ALLOWED = f"""
    t.enabled
    AND (t.claimed_until IS NULL OR t.claimed_until <= now())
    AND NOT EXISTS (SELECT 1 FROM notification_url_backoff AS b WHERE b.url = t.url AND b.until > now())
    AND (t.last_used_at IS NULL OR t.last_used_at <= now() - interval '{_MIN_INTERVAL_SECONDS} seconds')
    AND (t.day_started_at IS NULL OR t.day_started_at <= now() - interval '1 day' OR t.day_count < {TOKEN_DAILY_LIMIT})
    AND (t.rate_limited_until IS NULL OR t.rate_limited_until <= now())
"""  # noqa: S608 - constants only

_NEW_DAY = "t.day_started_at IS NULL OR t.day_started_at <= now() - interval '1 day'"

_CLAIM = f"""
WITH candidates AS (
    SELECT DISTINCT ON (d.token_pk) d.id, d.token_pk
    FROM notification_deliveries AS d
    JOIN notification_tokens AS t ON t.id = d.token_pk
    WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND {_TOKEN_ALLOWED}
    ORDER BY d.token_pk, d.next_attempt_at, d.id
    LIMIT %(limit)s
), locked AS (
    SELECT c.id, t.id AS token_pk
    FROM candidates AS c JOIN notification_tokens AS t ON t.id = c.token_pk
    WHERE {_TOKEN_ALLOWED}
    FOR UPDATE OF t SKIP LOCKED
), used AS (
    UPDATE notification_tokens AS t SET claimed_until = now() + make_interval(secs => %(lease)s)
    FROM locked WHERE t.id = locked.token_pk
    RETURNING t.id, t.url, t.token
), claimed AS (
    UPDATE notification_deliveries AS d
    SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)
    FROM locked WHERE d.id = locked.id AND d.state = 'pending'
    RETURNING d.id, d.notification_pk, d.token_pk, d.attempts
)
SELECT claimed.id, claimed.attempts, n.id, n.notification_id, n.title, n.body, n.target_url, n.created_at,
       used.id, used.url, used.token
FROM claimed
JOIN notifications AS n ON n.id = claimed.notification_pk
JOIN used ON used.id = claimed.token_pk
ORDER BY n.id, used.url, claimed.id
"""  # noqa: S608 - constants only


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery taken for sending: its notification, its token and how many times it was tried."""

    id: int
    attempts: int
    notification_pk: int
    notification_id: str
    message: Message
    created_at: datetime
    token_pk: int
    url: str
    token: str


def claim_deliveries(
    *, conn: Connection, limit: int, lease_seconds: float = CLAIM_LEASE_SECONDS
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` due deliveries, one per token whose limits allow a send (see the module doc)."""
    rows = conn.execute(_CLAIM, {"limit": limit, "lease": lease_seconds}).fetchall()
    return [
        ClaimedDelivery(
            id=int(row[0]),
            attempts=int(row[1]),
            notification_pk=int(row[2]),
            notification_id=str(row[3]),
            message=Message(title=str(row[4]), body=str(row[5]), target_url=str(row[6])),
            created_at=row[7],
            token_pk=int(row[8]),
            url=str(row[9]),
            token=str(row[10]),
        )
        for row in rows
    ]


def expire_deliveries(*, conn: Connection) -> int:
    """Give up pending deliveries whose token was disabled (``failed``) or whose notification is older
    than the clients' deduplication window (``expired``: resending could show it twice, or too late)."""
    cursor = conn.execute(
        f"""
        UPDATE notification_deliveries AS d
        SET state = CASE WHEN t.enabled THEN 'expired' ELSE 'failed' END,
            last_outcome = CASE WHEN t.enabled THEN 'expired' ELSE 'token_disabled' END
        FROM notification_tokens AS t, notifications AS n
        WHERE d.state = 'pending' AND t.id = d.token_pk AND n.id = d.notification_pk
          AND (NOT t.enabled OR n.created_at < now() - interval '{int(DEDUPLICATION_WINDOW.total_seconds())} seconds')
        """  # noqa: S608 - constants only
    )
    return cursor.rowcount


_COUNT_SENT = f"""
UPDATE notification_tokens AS t SET
    last_used_at = now(),
    day_count = CASE WHEN {_NEW_DAY} THEN 1 ELSE t.day_count + 1 END,
    day_started_at = CASE WHEN {_NEW_DAY} THEN now() ELSE t.day_started_at END,
    claimed_until = NULL
WHERE t.id = ANY(%(ids)s)
"""  # noqa: S608 - constants only


def mark_sent(*, conn: Connection, delivery_ids: Sequence[int], token_pks: Sequence[int]) -> None:
    """The client accepted these deliveries: each counts against its token's limits (and only now)."""
    conn.execute(
        "UPDATE notification_deliveries SET state = 'sent', sent_at = now(), last_outcome = 'sent'"
        " WHERE id = ANY(%(ids)s)",
        {"ids": list(delivery_ids)},
    )
    conn.execute(_COUNT_SENT, {"ids": list(token_pks)})


def release_tokens(*, conn: Connection, token_pks: Sequence[int]) -> None:
    """End the claim lease of these tokens (their deliveries are settled)."""
    conn.execute(
        "UPDATE notification_tokens SET claimed_until = NULL WHERE id = ANY(%(ids)s) AND claimed_until IS NOT NULL",
        {"ids": list(token_pks)},
    )


def mark_invalid(*, conn: Connection, delivery_ids: Sequence[int], token_pks: Sequence[int]) -> None:
    """The client called these tokens invalid: their deliveries end and the tokens are disabled at once."""
    conn.execute(
        "UPDATE notification_deliveries SET state = 'invalid', last_outcome = 'invalid_token' WHERE id = ANY(%(ids)s)",
        {"ids": list(delivery_ids)},
    )
    conn.execute(
        "UPDATE notification_tokens SET enabled = false, disabled_at = now(), disabled_reason = 'invalid_token'"
        " WHERE id = ANY(%(ids)s) AND enabled",
        {"ids": list(token_pks)},
    )


def mark_failed(*, conn: Connection, delivery_ids: Sequence[int], outcome: str) -> None:
    """These deliveries will not be tried again."""
    conn.execute(
        "UPDATE notification_deliveries SET state = 'failed', last_outcome = %(outcome)s WHERE id = ANY(%(ids)s)",
        {"ids": list(delivery_ids), "outcome": outcome[:200]},
    )


def reschedule(
    *, conn: Connection, delays: Sequence[tuple[int, float]], outcome: str, not_attempted: bool = False
) -> None:
    """Try these deliveries again later: ``[(delivery id, seconds from now)]``. ``not_attempted``: they were
    claimed but never sent (out of time, or their URL failed first), so the claim's attempt is given back."""
    if not delays:
        return
    conn.execute(
        "UPDATE notification_deliveries AS d"
        " SET next_attempt_at = now() + make_interval(secs => r.delay), last_outcome = %(outcome)s,"
        " attempts = CASE WHEN %(refund)s THEN greatest(d.attempts - 1, 0) ELSE d.attempts END"
        " FROM unnest(%(ids)s::bigint[], %(delays)s::float8[]) AS r(id, delay) WHERE d.id = r.id",
        {
            "ids": [i for i, _ in delays],
            "delays": [d for _, d in delays],
            "outcome": outcome[:200],
            "refund": not_attempted,
        },
    )


_BACK_OFF_URL = """
INSERT INTO notification_url_backoff AS b (url, failures, until)
VALUES (%(url)s, 1, now() + make_interval(secs => %(first)s))
ON CONFLICT (url) DO UPDATE SET
    failures = b.failures + 1,
    until = now() + make_interval(secs => least(%(cap)s, %(first)s * power(2, b.failures)))
RETURNING extract(epoch FROM until - now())
"""


def back_off_url(*, conn: Connection, url: str, first_seconds: float, cap_seconds: float) -> float:
    """Claim nothing for ``url`` for a while: ``first_seconds`` doubling per consecutive failure, at most
    ``cap_seconds``; returns the seconds it is backed off for."""
    row = conn.execute(_BACK_OFF_URL, {"url": url[:1024], "first": first_seconds, "cap": cap_seconds}).fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return float(row[0])


def clear_url_backoff(*, conn: Connection, url: str) -> None:
    """``url`` answered: its failures are forgotten."""
    conn.execute("DELETE FROM notification_url_backoff WHERE url = %(url)s", {"url": url[:1024]})


def hold_tokens(*, conn: Connection, token_pks: Sequence[int], seconds: float) -> None:
    """The client rate limited these tokens: send them nothing for ``seconds``."""
    conn.execute(
        "UPDATE notification_tokens SET rate_limited_until = now() + make_interval(secs => %(seconds)s)"
        " WHERE id = ANY(%(ids)s)",
        {"ids": list(token_pks), "seconds": seconds},
    )


def record_attempt(
    *,
    conn: Connection,
    notification_pk: int,
    url: str,
    tokens: int,
    outcome: Literal["answered", "rate_limited", "unavailable", "rejected"],
    status: int | None = None,
    successful: int = 0,
    invalid: int = 0,
    rate_limited: int = 0,
    failed: int = 0,
    error: str | None = None,
) -> None:
    """Record one request to a client and what it answered."""
    conn.execute(
        "INSERT INTO notification_attempts (notification_pk, url, tokens, outcome, status, successful, invalid,"
        " rate_limited, failed, error) VALUES (%(pk)s, %(url)s, %(tokens)s, %(outcome)s, %(status)s,"
        " %(successful)s, %(invalid)s, %(rate_limited)s, %(failed)s, %(error)s)",
        {
            "pk": notification_pk,
            "url": url[:1024],
            "tokens": tokens,
            "outcome": outcome,
            "status": status,
            "successful": successful,
            "invalid": invalid,
            "rate_limited": rate_limited,
            "failed": failed,
            "error": None if error is None else error[:500],
        },
    )
