"""Reads and writes of ``fc_users``: Farcaster profiles as Neynar last described them, with their age.

Every function is keyword-only and takes an autocommit psycopg connection. Freshness is decided by the
database clock (``fetched_at`` against ``now()``), so Lambda and database clocks never disagree about
it: a row read with ``max_age`` says whether it is ``fresh``. ``upsert_user`` stamps ``fetched_at`` and
says whether what we serve about an existing user changed (names, picture, addresses; follower counts
move all the time and do not count), with the addresses the row had before, so the caller can emit
``user.updated`` for both the old and the new wallets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from such_market.upstream.neynar import NeynarUser

    Connection = psycopg.Connection[tuple[Any, ...]]

_COLUMNS = """fid, username, display_name, pfp_url, custody_address, verified_eth_addresses, follower_count,
following_count, fetched_at, fetched_at > now() - make_interval(secs => %(max_age)s) AS fresh"""

_GET_USER = f"SELECT {_COLUMNS} FROM fc_users WHERE fid = %(fid)s"  # noqa: S608 - constant text

# ``previous`` reads the row as it was when the statement started (its snapshot), before the upsert.
_UPSERT_USER = f"""
WITH previous AS (
    SELECT username, display_name, pfp_url, custody_address, verified_eth_addresses
    FROM fc_users WHERE fid = %(fid)s
)
INSERT INTO fc_users AS u (fid, username, display_name, pfp_url, custody_address, verified_eth_addresses,
                           follower_count, following_count, fetched_at)
VALUES (%(fid)s, %(username)s, %(display_name)s, %(pfp_url)s, %(custody_address)s,
        %(verified_eth_addresses)s::text[], %(follower_count)s, %(following_count)s, now())
ON CONFLICT (fid) DO UPDATE
SET username = excluded.username, display_name = excluded.display_name, pfp_url = excluded.pfp_url,
    custody_address = excluded.custody_address, verified_eth_addresses = excluded.verified_eth_addresses,
    follower_count = excluded.follower_count, following_count = excluded.following_count,
    fetched_at = excluded.fetched_at
RETURNING {_COLUMNS},
    EXISTS (
        SELECT 1 FROM previous AS p
        WHERE (p.username, p.display_name, p.pfp_url, p.custody_address, p.verified_eth_addresses)
              IS DISTINCT FROM (u.username, u.display_name, u.pfp_url, u.custody_address, u.verified_eth_addresses)
    ) AS changed,
    (SELECT custody_address FROM previous) AS previous_custody_address,
    (SELECT verified_eth_addresses FROM previous) AS previous_verified_eth_addresses
"""  # noqa: S608 - constant text


def addresses_of(*, verified: Sequence[str], custody: str | None) -> tuple[str, ...]:
    """Every address of a user: the verified ones in their order, then the custody address, without repeats."""
    return tuple(dict.fromkeys((*verified, *((custody,) if custody else ()))))


@dataclass(frozen=True, slots=True)
class FarcasterUserRow:
    """One ``fc_users`` row; ``fresh`` says whether it was fetched within the ``max_age`` it was read with."""

    fid: int
    username: str | None
    display_name: str | None
    pfp_url: str | None
    custody_address: str | None
    verified_eth_addresses: tuple[str, ...]
    follower_count: int | None
    following_count: int | None
    fetched_at: datetime
    fresh: bool

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address of the user: verified addresses first, then the custody address."""
        return addresses_of(verified=self.verified_eth_addresses, custody=self.custody_address)


@dataclass(frozen=True, slots=True)
class UserUpsert:
    """What ``upsert_user`` stored; ``changed`` when an existing user's names, picture or addresses
    changed, with ``previous_addresses`` the addresses the row had before (empty for a new row)."""

    row: FarcasterUserRow
    changed: bool
    previous_addresses: tuple[str, ...]


def _row(values: tuple[Any, ...]) -> FarcasterUserRow:
    fid, username, display_name, pfp_url, custody, verified, followers, following, fetched_at, fresh = values[:10]
    return FarcasterUserRow(
        fid=int(fid),
        username=username,
        display_name=display_name,
        pfp_url=pfp_url,
        custody_address=custody,
        verified_eth_addresses=tuple(verified or ()),
        follower_count=followers,
        following_count=following,
        fetched_at=fetched_at,
        fresh=bool(fresh),
    )


def get_user(*, conn: Connection, fid: int, max_age: timedelta) -> FarcasterUserRow | None:
    """The stored user ``fid`` (``fresh`` if fetched within ``max_age``), or ``None``."""
    values = conn.execute(_GET_USER, {"fid": fid, "max_age": max_age.total_seconds()}).fetchone()
    return _row(values) if values is not None else None


def upsert_user(*, conn: Connection, user: NeynarUser, max_age: timedelta) -> UserUpsert:
    """Store ``user`` as fetched now; returns the stored row and the wallets it replaced."""
    params = {
        "fid": user.fid,
        "username": user.username,
        "display_name": user.display_name,
        "pfp_url": user.pfp_url,
        "custody_address": user.custody_address,
        "verified_eth_addresses": list(user.verified_eth_addresses),
        "follower_count": user.follower_count,
        "following_count": user.following_count,
        "max_age": max_age.total_seconds(),
    }
    values = conn.execute(_UPSERT_USER, params).fetchone()
    if values is None:  # pragma: no cover - INSERT … RETURNING always returns the row
        raise RuntimeError("upsert returned no row")
    changed, previous_custody, previous_verified = values[10:13]
    previous = addresses_of(verified=previous_verified or (), custody=previous_custody)
    return UserUpsert(row=_row(values), changed=bool(changed), previous_addresses=previous)
