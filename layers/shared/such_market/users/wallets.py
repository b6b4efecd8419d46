"""Which Farcaster users own a set of wallets (custody or verified addresses), from ``fc_users``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

_FIDS_OWNING = """
SELECT fid FROM fc_users
WHERE custody_address = ANY(%(wallets)s::text[]) OR verified_eth_addresses && %(wallets)s::text[]
ORDER BY fid
"""


def fids_owning(*, conn: psycopg.Connection[tuple[object, ...]], wallets: Sequence[str]) -> list[int]:
    """The fids whose custody or verified addresses include any of ``wallets`` (lower-case)."""
    if not wallets:
        return []
    rows = conn.execute(_FIDS_OWNING, {"wallets": list(wallets)}).fetchall()
    return [int(str(fid)) for (fid,) in rows]
