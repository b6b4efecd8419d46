"""The user use cases behind the public endpoints: cache → PostgreSQL → Neynar (profiles) and Alchemy (wallets).

Each read returns a ``Served`` (an HTTP status, pre-serialized JSON bytes and how it was served), so a
hit costs one cache GET and no decoding.

- ``profile`` / ``verifications``: the user from ``fc_users`` while it was fetched within the hot tier,
  else from Neynar (stored; when an existing user's names, picture or addresses changed, ``user.updated``
  commits with the row through the outbox). Neynar down with a stored row: the row is served. An fid
  Neynar does not know is a 404, cached briefly.
- ``nft_contracts``: every verified wallet scanned with Alchemy ``getContractsForOwner``, paged to the end
  or to ``WALLET_SCAN_MAX_PAGES`` (status ``truncated``); each scan is stored in
  ``wallet_collection_mapping`` (scan rows; index rows are never overwritten) and recorded in
  ``wallet_scans``, and cached per wallet (``wallets:{w}:contracts``, cold, spam included); the whole
  answer is cached under ``users:{fid}:collections`` (cold).
- both leave out the collections Alchemy flags as spam (``isSpam``) unless ``include_spam``: each wallet
  says how many it left out (``spamHidden``), and so does the answer (distinct contracts). The two forms
  are cached under their own keys (``…:with-spam`` for the one with spam); every invalidation of the
  user's collections drops both (``CacheKeys.user_collection_keys``).
- ``nft_contracts_normalized``: the same shape with ``system: "normalized"``, read from
  ``wallet_collection_mapping`` (index and scan rows; where the index holds a key its figures are the
  row's); a wallet is rescanned only when ``wallet_scans`` has no scan of it within the cold tier, so a
  scan that found nothing counts as a scan too. A wallet's status and ``totalCollectionsFound`` come from
  its scan record (``truncated`` while its last scan was).

A wallet whose scan fails has status ``error`` and does not fail the others; an answer with such a wallet
is served but never cached (the cache gives its fill lease back), so the next request tries again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, TypedDict

import orjson

from such_market.cache.entries import Entry
from such_market.cache.store import Served
from such_market.cache.tiers import Tier
from such_market.errors import error_body
from such_market.events.wire import WireEvent, check_addresses
from such_market.formats import iso_utc
from such_market.observability import logger
from such_market.runtime import ReadPathSettings, Runtime
from such_market.upstream.neynar_settings import NeynarSettings
from such_market.users.profiles import FarcasterUserRow, get_user, upsert_user
from such_market.users.wallet_collections import (
    HeldCollection,
    WalletHoldings,
    get_wallet_holdings,
    store_wallet_scan,
)

if TYPE_CHECKING:
    from such_market.upstream.alchemy import OwnerContract
    from such_market.upstream.neynar import NeynarUser


class UsersSettings(ReadPathSettings):
    """What the user endpoints need: the read path (Alchemy wallet scans) and Neynar (profiles)."""

    neynar: NeynarSettings


PROFILE_FRESH_FOR = timedelta(seconds=Tier.HOT)
"""An ``fc_users`` row older than the hot tier is fetched again from Neynar."""

SCAN_FRESH_FOR = timedelta(seconds=Tier.COLD)
"""A wallet scan older than the cold tier is redone (normalized answers)."""

WALLET_SCAN_MAX_PAGES = 20
"""At most this many pages of getContractsForOwner (100 collections each) per wallet scan."""

UPSTREAM_LEASE_MS = 30_000  # fills wait on Neynar and paged wallet scans: hold the lease long enough
NORMALIZED_SYSTEM = "normalized"

WalletStatus = Literal["success", "error", "truncated"]


class ContractBody(TypedDict):
    """One collection of a wallet in the nft-contracts answers (figures as decimal strings)."""

    address: str
    name: str | None
    symbol: str | None
    tokenType: str
    totalBalance: str | None
    numDistinctTokensOwned: str | None
    isSpam: bool


class WalletBody(TypedDict):
    """One wallet of the nft-contracts answers (``spamHidden``: its spam contracts left out)."""

    walletAddress: str
    status: WalletStatus
    contracts: list[ContractBody]
    totalCollectionsFound: int
    spamHidden: int


# -- entries -----------------------------------------------------------------------------------------
def _json(payload: object, *, cacheable: bool = True) -> Entry:
    return Entry(200, orjson.dumps(payload), cacheable)


def _unknown_user(fid: int) -> Entry:
    return Entry(404, error_body(f"no Farcaster user with fid {fid}", "not_found"))


def _fetch(runtime: Runtime, key: str, tier: Tier, load: Callable[[], Entry]) -> Served:
    return runtime.cache.fetch(key, tier, load, lease_ms=UPSTREAM_LEASE_MS)


# -- users ---------------------------------------------------------------------------------------------
def _store_user(runtime: Runtime, user: NeynarUser) -> FarcasterUserRow:
    """Store ``user`` as fetched now; a change of what we serve about it commits with ``user.updated``."""
    from such_market.events.outbox import outbox_transaction

    with outbox_transaction(runtime.conn, runtime.publisher) as tx:
        stored = upsert_user(conn=runtime.conn, user=user, max_age=PROFILE_FRESH_FOR)
        if stored.changed:
            tx.add(user_updated(user.fid, [*stored.previous_addresses, *stored.row.addresses]))
    return stored.row


def user_updated(fid: int, wallets: Sequence[str]) -> WireEvent:
    """``user.updated`` for ``fid`` whose addresses were or are ``wallets`` (each once, sorted), built without
    the bus's pydantic models (``such_market.events.wire``) but checked as ``models.UserUpdated`` checks it
    (``ValueError``): the profile routes learn users on their cold path. The tests compare it to the model."""
    if isinstance(fid, bool) or not isinstance(fid, int) or fid < 1:
        raise ValueError(f"fid must be a positive integer, got {fid!r}")
    unique = sorted({wallet.lower() for wallet in wallets})  # as the models hold an address: lower-cased
    return WireEvent.new("user.updated", {"fid": fid, "wallets": check_addresses(unique)})


def find_user(runtime: Runtime, fid: int) -> FarcasterUserRow | None:
    """The user ``fid``: from ``fc_users`` while fresh, else from Neynar (stored); ``None`` if unknown.

    When Neynar cannot answer, a stored row is served however old it is; without one, its failure stands
    (the edge answers 503). Neynar refusing our key is never hidden behind an old row.
    """
    from such_market.upstream.errors import UpstreamUnavailable

    row = get_user(conn=runtime.conn, fid=fid, max_age=PROFILE_FRESH_FOR)
    if row is not None and row.fresh:
        return row
    try:
        fetched = runtime.neynar.get_user(fid=fid)
    except UpstreamUnavailable:
        if row is None:
            raise
        logger.warning("Neynar unavailable; serving the stored profile", extra={"fid": fid})
        return row
    return None if fetched is None else _store_user(runtime, fetched)


def learn_user(runtime: Runtime, fid: int) -> None:
    """Make sure ``fc_users`` knows ``fid`` and its verified wallets (from Neynar unless fresh). Best
    effort, for callers to whom the user is a bonus (a user who turned notifications on): Neynar's
    failures are logged, not raised."""
    from such_market.upstream.errors import UpstreamError

    try:
        find_user(runtime, fid)
    except UpstreamError as error:
        logger.warning("could not look the user up", extra={"fid": fid, "error_type": type(error).__name__})


def profile_body(user: FarcasterUserRow) -> dict[str, object]:
    return {
        "fid": user.fid,
        "username": user.username,
        "displayName": user.display_name,
        "pfpUrl": user.pfp_url,
        "custodyAddress": user.custody_address,
        "verifiedAddresses": list(user.verified_eth_addresses),
        "followerCount": user.follower_count,
        "followingCount": user.following_count,
        "fetchedAt": iso_utc(user.fetched_at),
    }


def _user_summary(user: FarcasterUserRow) -> dict[str, object]:
    return {"fid": user.fid, "username": user.username, "displayName": user.display_name, "pfpUrl": user.pfp_url}


def profile(runtime: Runtime, fid: int) -> Served:
    """GET /api/profile/{fid}."""

    def load() -> Entry:
        user = find_user(runtime, fid)
        return _unknown_user(fid) if user is None else _json(profile_body(user))

    return _fetch(runtime, runtime.cache.keys.user_profile(fid), Tier.HOT, load)


def verifications(runtime: Runtime, fid: int) -> Served:
    """GET /api/verifications/{fid}: the user's verified addresses and custody address."""

    def load() -> Entry:
        user = find_user(runtime, fid)
        if user is None:
            return _unknown_user(fid)
        return _json(
            {
                "fid": user.fid,
                "username": user.username,
                "custodyAddress": user.custody_address,
                "verifiedAddresses": list(user.verified_eth_addresses),
            }
        )

    return _fetch(runtime, runtime.cache.keys.user_verifications(fid), Tier.HOT, load)


# -- wallet scans --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WalletScan:
    """What one scan of a wallet found; ``complete`` is false when the page cap (or a repeated page key)
    stopped it; ``reported_total`` is Alchemy's ``totalCount`` when it gave one."""

    contracts: tuple[OwnerContract, ...]
    complete: bool
    reported_total: int | None

    @property
    def status(self) -> WalletStatus:
        return "success" if self.complete else "truncated"

    @property
    def total_found(self) -> int:
        """Distinct contracts listed, or Alchemy's ``totalCount`` when larger (what ``wallet_scans`` records)."""
        return max(len({contract.address for contract in self.contracts}), self.reported_total or 0)


def scan_wallet(runtime: Runtime, wallet: str) -> WalletScan:
    """Page through getContractsForOwner (at most ``WALLET_SCAN_MAX_PAGES`` pages) and store the scan.

    Raises ``UpstreamError`` when Alchemy fails, psycopg's ``OperationalError`` when the database does.
    """
    contracts: list[OwnerContract] = []
    complete = False
    reported: int | None = None
    for page in runtime.alchemy.get_contracts_for_owner(owner=wallet, max_pages=WALLET_SCAN_MAX_PAGES):
        contracts.extend(page.contracts)
        reported = page.total_count if reported is None else reported
        complete = page.page_key is None
    store_wallet_scan(conn=runtime.conn, wallet=wallet, contracts=contracts, complete=complete, reported_total=reported)
    return WalletScan(tuple(contracts), complete, reported)


def _try_scan(runtime: Runtime, wallet: str) -> WalletScan | None:
    """``scan_wallet``, or ``None`` (logged) when Alchemy fails for this wallet. Alchemy refusing our key
    fails every wallet alike: that propagates (a configuration fault, answered 502)."""
    from such_market.upstream.errors import UpstreamCredentialsRejected, UpstreamError

    try:
        return scan_wallet(runtime, wallet)
    except UpstreamCredentialsRejected:
        raise
    except UpstreamError as error:
        logger.warning(
            "wallet scan failed", extra={"wallet": wallet, "error_type": type(error).__name__, "status": error.status}
        )
        return None


def _contract_body(
    *,
    address: str,
    name: str | None,
    symbol: str | None,
    token_type: str | None,
    total_balance: object,
    distinct_tokens: object,
    is_spam: bool | None,
) -> ContractBody:
    return {
        "address": address,
        "name": name,
        "symbol": symbol,
        "tokenType": token_type or "UNKNOWN",
        "totalBalance": None if total_balance is None else str(total_balance),
        "numDistinctTokensOwned": None if distinct_tokens is None else str(distinct_tokens),
        "isSpam": bool(is_spam),
    }


def _scanned_contract_body(contract: OwnerContract) -> ContractBody:
    return _contract_body(
        address=contract.address,
        name=contract.name,
        symbol=contract.symbol,
        token_type=contract.token_type,
        total_balance=contract.total_balance,
        distinct_tokens=contract.num_distinct_tokens_owned,
        is_spam=contract.is_spam,
    )


def _held_contract_body(held: HeldCollection) -> ContractBody:
    return _contract_body(
        address=held.contract_address,
        name=held.name,
        symbol=held.symbol,
        token_type=held.token_type,
        total_balance=held.total_balance,
        distinct_tokens=held.num_distinct_tokens,
        is_spam=held.is_spam,
    )


def _wallet_body(wallet: str, status: WalletStatus, contracts: list[ContractBody], total: int) -> WalletBody:
    return {
        "walletAddress": wallet,
        "status": status,
        "contracts": contracts,
        "totalCollectionsFound": total,
        "spamHidden": 0,
    }


def _hide_spam(wallet: WalletBody, *, hide: bool) -> tuple[WalletBody, set[str]]:
    """``wallet`` without its spam contracts (when ``hide``), counted in ``spamHidden``; and the addresses
    left out. ``spamHidden`` is set either way: a wallet body cached before it existed lacks it."""
    spam = {contract["address"] for contract in wallet["contracts"] if hide and contract["isSpam"]}
    kept = [contract for contract in wallet["contracts"] if contract["address"] not in spam]
    return {**wallet, "contracts": kept, "spamHidden": len(spam)}, spam


def _held_wallet_body(holdings: WalletHoldings, *, scan_failed: bool) -> WalletBody:
    """A wallet of the normalized answer: its rows, with status and total from its last scan record
    (``error`` when the rescan it needed failed: the rows are served as they are)."""
    held = holdings.collections
    contracts = [_held_contract_body(item) for item in held]
    scan = holdings.last_scan
    if scan_failed:
        return _wallet_body(holdings.wallet_address, "error", contracts, len(held))
    status: WalletStatus = "truncated" if scan is not None and not scan.complete else "success"
    total = max(len(held), scan.contracts_found if scan is not None else 0)
    return _wallet_body(holdings.wallet_address, status, contracts, total)


def _message(wallets: Sequence[WalletBody], total_collections: int, spam_hidden: int) -> str:
    if not wallets:
        return "the user has no verified wallets"
    failed = sum(wallet["status"] == "error" for wallet in wallets)
    truncated = sum(wallet["status"] == "truncated" for wallet in wallets)
    parts = [f"found {total_collections} collections across {len(wallets) - failed} of {len(wallets)} wallets"]
    if spam_hidden:
        parts.append(f"{spam_hidden} spam collections hidden (includeSpam=true lists them)")
    if failed:
        parts.append(f"{failed} wallet scans failed (try again shortly)")
    if truncated:
        parts.append(f"{truncated} wallets hold more collections than one scan lists")
    return "; ".join(parts)


def _collections_answer(
    user: FarcasterUserRow, wallets: list[WalletBody], *, include_spam: bool, system: str | None = None
) -> Entry:
    """The SPEC answer over the wallet bodies, spam left out unless ``include_spam`` (``totalCollections``
    and ``spamHidden`` count distinct contracts across wallets); not cacheable when a wallet failed."""
    shown = [_hide_spam(wallet, hide=not include_spam) for wallet in wallets]
    wallets = [wallet for wallet, _ in shown]
    hidden = {address for _, spam in shown for address in spam}
    succeeded = [wallet for wallet in wallets if wallet["status"] != "error"]
    distinct = {contract["address"] for wallet in wallets for contract in wallet["contracts"]}
    body: dict[str, object] = {
        "user": _user_summary(user),
        "wallets": wallets,
        "totalWallets": len(wallets),
        "successfulWallets": len(succeeded),
        "totalCollections": len(distinct),
        "spamHidden": len(hidden),
        "message": _message(wallets, len(distinct), len(hidden)),
    }
    if system is not None:
        body["system"] = system
    return _json(body, cacheable=len(succeeded) == len(wallets))


# -- use cases: collections ----------------------------------------------------------------------------
def wallet_contracts(runtime: Runtime, wallet: str) -> Served:
    """One wallet's collections from a fresh Alchemy scan, cached under ``wallets:{w}:contracts`` (cold).

    The body is the wallet's entry of the nft-contracts answer; a failed scan is served, not cached.
    """

    def load() -> Entry:
        scan = _try_scan(runtime, wallet)
        if scan is None:
            return _json(_wallet_body(wallet, "error", [], 0), cacheable=False)
        contracts = [_scanned_contract_body(contract) for contract in scan.contracts]
        return _json(_wallet_body(wallet, scan.status, contracts, scan.total_found))

    return _fetch(runtime, runtime.cache.keys.wallet_contracts(wallet), Tier.COLD, load)


def nft_contracts(runtime: Runtime, fid: int, *, include_spam: bool = False) -> Served:
    """GET /api/nft-contracts/{fid}: the collections of each verified wallet, scanned with Alchemy (spam
    left out unless ``include_spam``)."""

    def load() -> Entry:
        user = find_user(runtime, fid)
        if user is None:
            return _unknown_user(fid)
        wallets: list[WalletBody] = [
            orjson.loads(wallet_contracts(runtime, wallet).entry.body) for wallet in user.verified_eth_addresses
        ]
        return _collections_answer(user, wallets, include_spam=include_spam)

    return _fetch(runtime, runtime.cache.keys.user_collections(fid, include_spam=include_spam), Tier.COLD, load)


def nft_contracts_normalized(runtime: Runtime, fid: int, *, include_spam: bool = False) -> Served:
    """GET /api/nft-contracts/{fid}/normalized: the answer from ``wallet_collection_mapping``, rescanning
    only wallets that ``wallet_scans`` shows without a scan within the cold tier (spam left out unless
    ``include_spam``)."""

    def load() -> Entry:
        user = find_user(runtime, fid)
        if user is None:
            return _unknown_user(fid)
        wallets = list(user.verified_eth_addresses)
        holdings = get_wallet_holdings(conn=runtime.conn, wallets=wallets, max_age=SCAN_FRESH_FOR)
        stale = [wallet for wallet in dict.fromkeys(wallets) if not holdings[wallet].scan_fresh]
        failed = {wallet for wallet in stale if _try_scan(runtime, wallet) is None}
        if rescanned := [wallet for wallet in stale if wallet not in failed]:
            holdings |= get_wallet_holdings(conn=runtime.conn, wallets=rescanned, max_age=SCAN_FRESH_FOR)
        bodies = [_held_wallet_body(holdings[wallet], scan_failed=wallet in failed) for wallet in wallets]
        return _collections_answer(user, bodies, include_spam=include_spam, system=NORMALIZED_SYSTEM)

    key = runtime.cache.keys.user_collections_normalized(fid, include_spam=include_spam)
    return _fetch(runtime, key, Tier.HOT, load)
