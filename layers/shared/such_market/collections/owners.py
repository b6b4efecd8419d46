"""Replacing a collection's owners and announcing whose holdings changed (``ownership.changed``).

Shared by the ingestion job (``collections.ingestion``) and the admin owner sync
(``ownership.actions.sync_collection_owners``): both replace the collection's ``nft_ownership`` with an
upstream listing in one set-based call, and both must tell the invalidator which wallets now hold
something else, so that the wallets' contract lists, their owned-in-collection keys and their users'
collection keys are dropped. The wallets are those whose ``user_collections`` summary of the collection
(token count, total balance) differs before and after the replacement, read in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from such_market.collections.queries import collection_holdings
from such_market.collections.writes import OwnersReplaced, replace_collection_owners
from such_market.events.wire import ownership_changes

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterable

    import psycopg

    from such_market.events.outbox import OutboxTransaction

    Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class OwnersSynced:
    """What ``replace_owners_announcing`` did: the rows replaced and the wallets whose holdings changed."""

    replaced: OwnersReplaced
    wallets: tuple[str, ...]


def replace_owners_announcing(
    *,
    conn: Connection,
    tx: OutboxTransaction,
    collection_id: uuid.UUID,
    contract_address: str,
    owners: Iterable[tuple[str, int, int]],
) -> OwnersSynced:
    """Make the collection's owners exactly ``owners`` (``replace_collection_owners``, whose ``ValueError``
    propagates) and add ``ownership.changed`` for the changed wallets to ``tx`` (``events.wire.ownership_changes``).
    Call it inside ``tx``'s transaction, after whatever locks the caller needs."""
    before = collection_holdings(conn=conn, collection_id=collection_id)
    replaced = replace_collection_owners(conn=conn, collection_id=collection_id, owners=owners)
    after = collection_holdings(conn=conn, collection_id=collection_id)
    wallets = tuple(
        sorted(wallet for wallet in before.keys() | after.keys() if before.get(wallet) != after.get(wallet))
    )
    for event in ownership_changes(contract_address, (), wallets):
        tx.add(event)
    return OwnersSynced(replaced=replaced, wallets=wallets)


__all__ = ["OwnersSynced", "replace_owners_announcing"]
