"""The cache keys a change of one entity makes stale, and their deletion: a collection, some tokens'
ownership (with their wallets and those wallets' users), a Farcaster user.

``such_market.events.invalidation`` maps each event to these; the Alchemy webhook calls
``invalidate_ownership`` itself right after its commit (read-your-writes), without the event models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from such_market.cache.store import ReadThroughCache
from such_market.validation import ZERO_ADDRESS

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
    """Every key of the user (profile, verifications, collections) and the contract lists of ``wallets``."""
    keys = cache.keys
    singles = list(keys.user_keys(fid))
    singles += [keys.wallet_contracts(wallet) for wallet in sorted(set(wallets))]
    return cache.invalidate_keys(singles)
