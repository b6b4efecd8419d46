"""What each event invalidates (SPEC §6), exactly and completely: both sides of every transfer.

- ``collection.updated`` / ``collection.refreshed`` → every key of the collection (its index set:
  metadata, pages, traits, single NFTs, token ownership, wallets' tokens in it, in-flight fills);
- ``nft.transferred`` → the token's ownership key; the sender's and the receiver's tokens in the
  collection and contract lists; the collection keys (plain and normalized) of the users who own
  either wallet;
- ``ownership.changed`` → the same for every listed token and wallet;
- ``user.updated`` → every key of the user (profile, verifications, collections), and the contract
  lists of the listed wallets.

The keys of each entity are ``such_market.cache.staleness``'s (the Alchemy webhook deletes them too, right
after its commit, without the event models). Each operation is single-slot (cluster-safe) and costs
O(keys of the entity): no ``KEYS``, no ``SCAN``.
"""

from __future__ import annotations

from such_market.cache.staleness import FidsOwning, invalidate_collection, invalidate_ownership, invalidate_user
from such_market.cache.store import ReadThroughCache
from such_market.events.models import (
    CollectionRefreshed,
    CollectionUpdated,
    EventDetail,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
)

INVALIDATING_EVENTS: tuple[type[EventDetail], ...] = (
    CollectionUpdated,
    CollectionRefreshed,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
)
"""The events whose consumer deletes cache keys (the template's invalidation rule lists the same)."""


def invalidate_for(detail: EventDetail, cache: ReadThroughCache, fids_owning: FidsOwning) -> int:
    """Invalidate what ``detail`` makes stale; returns the number of keys deleted."""
    match detail:
        case CollectionUpdated() | CollectionRefreshed():
            return invalidate_collection(cache, detail.contract_address)
        case NftTransferred():
            return invalidate_ownership(
                cache,
                address=detail.contract_address,
                token_ids=[int(detail.token_id)],
                wallets=[detail.from_, detail.to],
                fids_owning=fids_owning,
            )
        case OwnershipChanged():
            return invalidate_ownership(
                cache,
                address=detail.contract_address,
                token_ids=[int(token_id) for token_id in detail.token_ids],
                wallets=detail.wallets,
                fids_owning=fids_owning,
            )
        case UserUpdated():
            return invalidate_user(cache, fid=detail.fid, wallets=detail.wallets)
    return 0
