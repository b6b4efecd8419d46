"""Reads of the notification tables (migration 0013) and of what a notification talks about.

Every function is keyword-only and takes a psycopg connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Recipient:
    """A user with notifications on who verified the sending and/or the receiving wallet."""

    fid: int
    sent: bool
    received: bool


_RECIPIENTS = """
SELECT u.fid, %(from)s = ANY(u.verified_eth_addresses), %(to)s = ANY(u.verified_eth_addresses)
FROM fc_users AS u
WHERE u.verified_eth_addresses && ARRAY[%(from)s, %(to)s]::text[]
  AND EXISTS (SELECT 1 FROM notification_tokens AS t WHERE t.fid = u.fid AND t.enabled)
ORDER BY u.fid
"""


def transfer_recipients(*, conn: Connection, sender: str, receiver: str) -> list[Recipient]:
    """The users with an enabled token whose verified wallets include ``sender`` or ``receiver``."""
    rows = conn.execute(_RECIPIENTS, {"from": sender, "to": receiver}).fetchall()
    return [Recipient(fid=int(fid), sent=bool(sent), received=bool(received)) for fid, sent, received in rows]


@dataclass(frozen=True, slots=True)
class DigestTransfer:
    """The first transfer of a digest, named as the user knows it."""

    direction: str
    contract_address: str
    token_id: int
    counterparty: str
    collection_name: str | None
    nft_title: str | None


@dataclass(frozen=True, slots=True)
class Digest:
    """What a transfer digest collected: counts, and its first transfer."""

    received: int
    sent: int
    collections: int
    first: DigestTransfer


_DIGEST_COUNTS = """
SELECT count(*) FILTER (WHERE direction = 'received'), count(*) FILTER (WHERE direction = 'sent'),
       count(DISTINCT contract_address)
FROM notification_transfers WHERE notification_pk = %(pk)s
"""

_DIGEST_FIRST = """
SELECT tr.direction, tr.contract_address, tr.token_id, tr.counterparty, c.name, n.title
FROM notification_transfers AS tr
LEFT JOIN collections AS c ON c.contract_address = tr.contract_address
LEFT JOIN nfts AS n ON n.collection_id = c.id AND n.token_id = tr.token_id
WHERE tr.notification_pk = %(pk)s
ORDER BY tr.block_number, tr.log_index, tr.event_id
LIMIT 1
"""


def digest(*, conn: Connection, pk: int) -> Digest | None:
    """What digest ``pk`` collected (``None`` when it holds no transfer)."""
    counts = conn.execute(_DIGEST_COUNTS, {"pk": pk}).fetchone()
    first = conn.execute(_DIGEST_FIRST, {"pk": pk}).fetchone()
    if counts is None or first is None:
        return None
    return Digest(
        received=int(counts[0]),
        sent=int(counts[1]),
        collections=int(counts[2]),
        first=DigestTransfer(
            direction=str(first[0]),
            contract_address=str(first[1]),
            token_id=int(first[2]),
            counterparty=str(first[3]),
            collection_name=first[4],
            nft_title=first[5],
        ),
    )


def fids_with_tokens(*, conn: Connection, fids: Sequence[int] | None) -> list[int]:
    """Which of ``fids`` (every fid when ``None``) have an enabled token."""
    rows = conn.execute(
        "SELECT DISTINCT fid FROM notification_tokens WHERE enabled AND (%(all)s OR fid = ANY(%(fids)s::bigint[]))"
        " ORDER BY fid",
        {"all": fids is None, "fids": list(fids or ())},
    ).fetchall()
    return [int(fid) for (fid,) in rows]


def delivery_states(*, conn: Connection, pk: int) -> dict[str, int]:
    """How many of notification ``pk``'s deliveries are in each state."""
    rows = conn.execute(
        "SELECT state, count(*) FROM notification_deliveries WHERE notification_pk = %(pk)s GROUP BY state",
        {"pk": pk},
    ).fetchall()
    return {str(state): int(count) for state, count in rows}


def attempts_of(*, conn: Connection, pk: int) -> list[dict[str, object]]:
    """Every request made for notification ``pk``, oldest first."""
    rows = conn.execute(
        "SELECT url, tokens, outcome, status, successful, invalid, rate_limited, failed, error, attempted_at"
        " FROM notification_attempts WHERE notification_pk = %(pk)s ORDER BY id",
        {"pk": pk},
    ).fetchall()
    names = ("url", "tokens", "outcome", "status", "successful", "invalid", "rateLimited", "failed", "error", "at")
    return [dict(zip(names, row, strict=True)) for row in rows]
