"""Scheduled ownership re-verification (SPEC §6): the least recently verified tokens, checked upstream.

``reverify`` picks a bounded batch of tokens whose owner rows were verified longest ago (the later of a
row's ``last_verified_at`` and its collection's last bulk sync, ``collection_owner_syncs``, migration
0011; ``queries.stalest_tokens``, read along the ``(collection_id, last_verified_at)`` index, never a
full scan), asks Alchemy
``getOwnersForNFT`` for each (with the collection's token type, so ERC-721 needs one call per token), and
hands what it saw to ``reconcile_owners`` — the same mover and the same outbox transaction as the webhook's transfers —
so corrections emit ``ownership.changed`` and rows that were right get ``last_verified_at = now()``.

Bounds: ``batch_size`` tokens per run; no new upstream call after ``time_budget_seconds``; a rate
limit or an exhausted upstream ends the run early (what was observed so far is still applied); a
token whose lookup failed otherwise is counted and left for the next run (its rows stay oldest).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from such_market.config import DatabaseSettings, EventSettings, FunctionSettings
from such_market.observability import logger
from such_market.ownership.queries import stalest_tokens
from such_market.ownership.transfers import ObservedToken, reconcile_owners
from such_market.upstream.alchemy_settings import AlchemySettings

if TYPE_CHECKING:
    import psycopg

    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient

DEFAULT_BATCH_SIZE: Final = 200
DEFAULT_TIME_BUDGET_SECONDS: Final = 60.0
MAX_BATCH_SIZE: Final = 5000


class VerifyOwnershipSettings(FunctionSettings):
    """Settings of the re-verification function: the database, the bus and Alchemy."""

    database: DatabaseSettings
    events: EventSettings
    alchemy: AlchemySettings


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What one run did: ``checked`` tokens were looked up, ``corrected`` of them had wrong rows,
    ``failed`` lookups are left for later, ``skipped`` tokens could not be reconciled; ``stopped_early``
    when the time budget or the upstream ended the run."""

    checked: int
    corrected: int
    unchanged: int
    failed: int
    skipped: int
    wallets_changed: int
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        """The report with camelCase keys (the admin action's answer)."""
        names = {"wallets_changed": "walletsChanged", "stopped_early": "stoppedEarly"}
        return {names.get(key, key): value for key, value in asdict(self).items()}


def reverify(
    *,
    conn: psycopg.Connection[tuple[Any, ...]],
    alchemy: AlchemyClient,
    publisher: EventPublisher,
    batch_size: int = DEFAULT_BATCH_SIZE,
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
    collection_id: uuid.UUID | None = None,
) -> VerifyReport:
    """Re-verify the ``batch_size`` least recently verified tokens (of one collection when given)."""
    from such_market.upstream.errors import UpstreamError, UpstreamUnavailable

    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    deadline = time.monotonic() + time_budget_seconds
    observed: list[ObservedToken] = []
    failed = 0
    stopped_early = False
    for contract, token_type, token_id in stalest_tokens(conn=conn, limit=batch_size, collection_id=collection_id):
        if time.monotonic() >= deadline:
            stopped_early = True
            break
        try:
            owners = alchemy.get_owners_for_nft(
                contract=contract, token_id=token_id, token_type=None if token_type == "UNKNOWN" else token_type
            )
        except UpstreamUnavailable:
            logger.warning("re-verification stopped: the upstream is unavailable or rate limiting")
            failed += 1
            stopped_early = True
            break
        except UpstreamError:
            failed += 1
            continue
        observed.append(
            ObservedToken(
                contract=contract,
                token_id=token_id,
                owners={owner.address: None if owner.balance is None else int(owner.balance) for owner in owners},
            )
        )
    result = reconcile_owners(conn=conn, observed=observed, publisher=publisher)
    corrected = result.changes.changed_tokens
    return VerifyReport(
        checked=len(observed),
        corrected=corrected,
        unchanged=len(observed) - corrected - result.skipped,
        failed=failed,
        skipped=result.skipped,
        wallets_changed=sum(len(wallets) for wallets in result.changes.wallets.values()),
        stopped_early=stopped_early,
    )
