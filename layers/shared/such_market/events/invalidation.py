"""What each event invalidates (SPEC §6), exactly and completely: both sides of every transfer.

- ``collection.updated`` / ``collection.refreshed`` → every key of the collection (its index set:
  metadata, pages, traits, single NFTs, token ownership, wallets' tokens in it, in-flight fills);
- ``nft.transferred`` → the token's ownership key; the sender's and the receiver's tokens in the
  collection and contract lists; the collection keys (plain and normalized) of the users who own
  either wallet;
- ``ownership.changed`` → the same for every listed token and wallet;
- ``user.updated`` → every key of the user (profile, verifications, collections), and the contract
  lists of the listed wallets.

Each operation is single-slot (cluster-safe) and costs O(keys of the entity): no ``KEYS``, no ``SCAN``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from such_market.cache.store import ReadThroughCache
from such_market.events.models import (
    CollectionRefreshed,
    CollectionUpdated,
    EventDetail,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
)
from such_market.validation import ZERO_ADDRESS

INVALIDATING_EVENTS: tuple[type[EventDetail], ...] = (
    CollectionUpdated,
    CollectionRefreshed,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
)
"""The events whose consumer deletes cache keys (the template's invalidation rule lists the same)."""

FidsOwning = Callable[[Sequence[str]], list[int]]


def invalidate_collection(cache: ReadThroughCache, address: str) -> int:
    """Every cache key of one collection."""
    return cache.invalidate_index(cache.keys.collection_index(address))


def invalidate_ownership(
    cache: ReadThroughCache,
    *,
    address: str,
    token_ids: Iterable[int],
    wallets: Iterable[str],
    fids_owning: FidsOwning,
) -> int:
    """Token ownership keys, the wallets' tokens in the collection and contract lists, their users'
    collection keys. The zero address (mints and burns) owns nothing and is skipped."""
    keys = cache.keys
    holders = sorted({wallet for wallet in wallets if wallet != ZERO_ADDRESS})
    deleted = 0
    for wallet in holders:
        deleted += cache.invalidate_index(keys.owned_index(address, wallet))
    singles = [keys.ownership(address, token_id) for token_id in sorted(set(token_ids))]
    singles += [keys.wallet_contracts(wallet) for wallet in holders]
    for fid in fids_owning(holders):
        singles += keys.user_collection_keys(fid)
    return deleted + cache.invalidate_keys(singles)


def invalidate_user(cache: ReadThroughCache, *, fid: int, wallets: Iterable[str]) -> int:
    keys = cache.keys
    singles = list(keys.user_keys(fid))
    singles += [keys.wallet_contracts(wallet) for wallet in sorted(set(wallets))]
    return cache.invalidate_keys(singles)


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
