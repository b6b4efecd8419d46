"""Cache key names: hierarchical, prefixed, and cluster-safe.

The part in braces is the hash tag, so every key of one collection (metadata, pages, traits, single
NFTs, token ownership, a wallet's tokens in it, and the indexes that track them) lives in one slot
and can be invalidated by one atomic script, in cluster mode too. Inputs are validated before they get
here (addresses lower-case, token ids decimal), so key names never carry raw user input.

Two namespaces never mix: cache keys (``<prefix>:collections:…``, ``…:ownership:…``, ``…:wallets:…``,
``…:users:…``, the ``…:idx:…`` entity indexes with their lease sets, drain lists and tombstones, and
``…:lease`` fill leases; ``CACHE_NAMESPACES``) may be deleted at any time; durable state lives under
``<prefix>:durable:…`` and no cache operation touches it.
"""

from __future__ import annotations

from dataclasses import dataclass

LEASE_SUFFIX = ":lease"
CACHE_NAMESPACES = ("collections", "ownership", "wallets", "users", "idx")
"""The first segments after the prefix that hold cache keys; everything else (``durable``) is not cache."""


@dataclass(frozen=True, slots=True)
class CacheKeys:
    """Builds every key name of one deployment's prefix."""

    prefix: str

    # -- collections (hash tag: the contract address) ----------------------------------------------
    def collection_metadata(self, address: str) -> str:
        return f"{self.prefix}:collections:{{{address}}}:metadata"

    def nft_page(
        self, address: str, page: int, size: int, filter_hash: str | None = None, sort: str = "tokenId"
    ) -> str:
        key = f"{self.prefix}:collections:{{{address}}}:nfts:page:{page}:size:{size}"
        return _page_suffix(key, filter_hash, sort)

    def nft_cursor_page(
        self, address: str, after_token_id: int, size: int, filter_hash: str | None = None, sort: str = "tokenId"
    ) -> str:
        key = f"{self.prefix}:collections:{{{address}}}:nfts:after:{after_token_id}:size:{size}"
        return _page_suffix(key, filter_hash, sort)

    def traits(self, address: str) -> str:
        return f"{self.prefix}:collections:{{{address}}}:traits"

    def nft(self, address: str, token_id: int) -> str:
        return f"{self.prefix}:collections:{{{address}}}:nft:{token_id}"

    def ownership(self, address: str, token_id: int) -> str:
        return f"{self.prefix}:ownership:{{{address}}}:{token_id}"

    def owned(self, address: str, wallet: str, page: int, size: int) -> str:
        # The first braces are the hash tag: a wallet's tokens in a collection live with the collection.
        return f"{self.prefix}:collections:{{{address}}}:owned:{{{wallet}}}:page:{page}:size:{size}"

    # -- wallets and users ------------------------------------------------------------------------
    def wallet_contracts(self, wallet: str) -> str:
        return f"{self.prefix}:wallets:{{{wallet}}}:contracts"

    def user_profile(self, fid: int) -> str:
        return f"{self.prefix}:users:{{{fid}}}:profile"

    def user_collections(self, fid: int, *, include_spam: bool = False) -> str:
        key = f"{self.prefix}:users:{{{fid}}}:collections"
        return f"{key}:with-spam" if include_spam else key

    def user_collections_normalized(self, fid: int, *, include_spam: bool = False) -> str:
        key = f"{self.prefix}:users:{{{fid}}}:collections:normalized"
        return f"{key}:with-spam" if include_spam else key

    def user_collection_keys(self, fid: int) -> tuple[str, ...]:
        """The user's collection answers: both endpoints, with and without spam (``includeSpam``)."""
        return tuple(
            key(fid, include_spam=spam)
            for key in (self.user_collections, self.user_collections_normalized)
            for spam in (False, True)
        )

    def user_verifications(self, fid: int) -> str:
        return f"{self.prefix}:users:{{{fid}}}:verifications"

    def user_keys(self, fid: int) -> tuple[str, ...]:
        """Every cache key of one Farcaster user."""
        return (
            self.user_profile(fid),
            self.user_verifications(fid),
            *self.user_collection_keys(fid),
        )

    def app_key(self, fid: int, key: str) -> str:
        """Whether ``key`` (0x + 64 lower-case hex digits) is an app key of ``fid``: Neynar's answer, kept briefly."""
        return f"{self.prefix}:appkeys:{{{fid}}}:{key}"

    # -- entity indexes: which keys exist for an entity (same slot as the keys they track) ------------
    def collection_index(self, address: str) -> str:
        return f"{self.prefix}:idx:collections:{{{address}}}"

    def owned_index(self, address: str, wallet: str) -> str:
        return f"{self.prefix}:idx:collections:{{{address}}}:owned:{wallet}"

    def index_registry(self) -> str:
        """Every entity index, scored with the time (ms) after which all it tracked has expired: the
        reaper's worklist (``such_market.cache.reaping``). Durable, so a cache clear never orphans an index."""
        return self.durable("index-registry")

    # -- namespaces --------------------------------------------------------------------------------
    def durable(self, *parts: str) -> str:
        """A key in the durable namespace (locks, idempotency, analytics): never cleared as cache."""
        return ":".join((self.prefix, "durable", *parts))


def lease_key(key: str) -> str:
    """The fill lease of ``key``: same hash tag, so value, lease and indexes share a slot."""
    return key + LEASE_SUFFIX


def lease_set_key(index: str) -> str:
    """The set of fill leases in flight for the keys ``index`` tracks (same slot as the index)."""
    return index + ":leases"


def drain_list_key(index: str) -> str:
    """The list of ``index``'s tombstones not yet drained (an invalidation that died mid-drain leaves
    its tombstone here, and the next invalidation of the index drains it)."""
    return index + ":drains"


def tombstone_key(index: str, tag: str) -> str:
    """A former ``index`` set renamed by an invalidation, drained in batches (same slot)."""
    return f"{index}:drain:{tag}"


def _page_suffix(key: str, filter_hash: str | None, sort: str) -> str:
    """An NFT page key's filter and (other than the default token order) sort parts."""
    if filter_hash:
        key = f"{key}:f:{filter_hash}"
    return key if sort == "tokenId" else f"{key}:s:{sort}"
