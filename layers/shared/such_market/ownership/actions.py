"""Admin ownership actions (``POST /api/admin/ownership/stats``): sync, discovery-stats, verify.

- ``sync``: re-load one collection's owners from Alchemy ``getOwnersForContract`` (with token balances)
  into ``nft_ownership`` through ``replace_collection_owners``, under the collection's ownership lock
  and in one outbox transaction with ``collection.updated`` and ``ownership.changed`` (the wallets whose
  holdings of the collection changed). Bounded: at most ``SYNC_MAX_PAGES`` pages within
  ``SYNC_TIME_BUDGET_SECONDS``; a collection with more owners than that is refused (409) rather than
  half-replaced — its ingestion (``POST /api/collection/{address}/refresh``) loads it in the background.
- ``discovery-stats``: the ``nftDiscovery`` part of ``GET /api/admin/ownership/stats`` (same SQL).
- ``verify``: one bounded re-verification run (``reverify``), of one collection when given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from such_market.collections.queries import get_collection
from such_market.config import AdminSettings, DatabaseSettings, EventSettings, FunctionSettings
from such_market.errors import BadRequestError, ConflictError, NotFoundError
from such_market.ownership.stats import ownership_stats
from such_market.upstream.alchemy_settings import AlchemySettings
from such_market.validation import parse_address, parse_json_object, token_id_value

if TYPE_CHECKING:
    import psycopg

    from such_market.events.publisher import EventPublisher
    from such_market.upstream.alchemy import AlchemyClient

    Connection = psycopg.Connection[tuple[Any, ...]]

Action = Literal["sync", "discovery-stats", "verify"]
ACTIONS: Final = ("sync", "discovery-stats", "verify")
SYNC_MAX_PAGES: Final = 20
SYNC_TIME_BUDGET_SECONDS: Final = 20.0
VERIFY_BATCH_SIZE: Final = 20
VERIFY_TIME_BUDGET_SECONDS: Final = 10.0
MAX_BODY_BYTES: Final = 4096


class OwnershipActionsSettings(FunctionSettings):
    """Settings of the ownership-actions admin function."""

    database: DatabaseSettings
    events: EventSettings
    admin: AdminSettings
    alchemy: AlchemySettings


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A validated request body."""

    action: Action
    contract_address: str | None = None


def parse_action_request(body: str | bytes | None) -> ActionRequest:
    """``{action, contractAddress?}`` → ``ActionRequest``; 400 for anything else (``sync`` needs the address)."""
    payload = parse_json_object(
        body, max_bytes=MAX_BODY_BYTES, shape="{action, contractAddress?}", fields=("action", "contractAddress")
    )
    action = payload.get("action")
    if action not in ACTIONS:
        raise BadRequestError(f"invalid action: expected one of {', '.join(ACTIONS)}", code="invalid_action")
    raw_address = payload.get("contractAddress")
    if raw_address is not None and not isinstance(raw_address, str):
        raise BadRequestError("invalid contractAddress: expected a string", code="invalid_address")
    address = None if raw_address is None else parse_address(raw_address)
    if action == "sync" and address is None:
        raise BadRequestError("action sync requires contractAddress", code="invalid_body")
    return ActionRequest(action=action, contract_address=address)


def sync_collection_owners(
    *, conn: Connection, alchemy: AlchemyClient, publisher: EventPublisher, contract_address: str
) -> dict[str, object]:
    """Replace the collection's owners with Alchemy's current list (see the module docstring)."""
    # What only a sync writes (the event models: pydantic) is imported here, not on discovery-stats' path
    from such_market.collections.owners import replace_owners_announcing
    from such_market.events.models import CollectionUpdated, Event
    from such_market.events.outbox import outbox_transaction
    from such_market.ownership.transfers import lock_collections

    collection = get_collection(conn=conn, address=contract_address)
    if collection is None:
        raise NotFoundError(f"collection {contract_address} is not indexed", code="collection_not_found")
    deadline = time.monotonic() + SYNC_TIME_BUDGET_SECONDS
    owners: list[tuple[str, int, int]] = []
    complete = False
    for page in alchemy.get_owners_for_contract(
        contract=contract_address, with_token_balances=True, max_pages=SYNC_MAX_PAGES
    ):
        owners.extend(
            (owner.address, token_id_value(item.token_id), int(item.balance))
            for owner in page.owners
            for item in owner.token_balances
        )
        complete = page.page_key is None
        if not complete and time.monotonic() >= deadline:
            break
    if not complete:
        raise ConflictError(
            "the collection has too many owners for a synchronous sync; refresh it instead", code="sync_too_large"
        )
    with outbox_transaction(conn, publisher) as tx:
        lock_collections(conn=conn, contracts=[contract_address])
        tx.add(Event(CollectionUpdated(contract_address=contract_address, reason="ownership-sync")))
        try:
            synced = replace_owners_announcing(
                conn=conn, tx=tx, collection_id=collection.id, contract_address=contract_address, owners=owners
            )
        except ValueError as error:
            raise ConflictError(str(error), code="inconsistent_upstream") from None
    return {
        "contractAddress": contract_address,
        "ownersListed": len({owner for owner, _, _ in owners}),
        "rowsHeld": synced.replaced.held,
        "rowsDeleted": synced.replaced.deleted,
        "walletsChanged": len(synced.wallets),
    }


def discovery_stats(*, conn: Connection) -> dict[str, object]:
    """The ``nftDiscovery`` part of the ownership statistics."""
    discovery = ownership_stats(conn=conn)["nftDiscovery"]
    assert isinstance(discovery, dict)  # noqa: S101 - ownership_stats builds it as a dict
    return discovery


def verify_now(
    *, conn: Connection, alchemy: AlchemyClient, publisher: EventPublisher, contract_address: str | None
) -> dict[str, object]:
    """One small re-verification run (of one collection when given; 404 when it is not indexed)."""
    from such_market.ownership.verification import reverify  # its reconciliation writes events: pydantic

    collection_id = None
    if contract_address is not None:
        collection = get_collection(conn=conn, address=contract_address)
        if collection is None:
            raise NotFoundError(f"collection {contract_address} is not indexed", code="collection_not_found")
        collection_id = collection.id
    report = reverify(
        conn=conn,
        alchemy=alchemy,
        publisher=publisher,
        batch_size=VERIFY_BATCH_SIZE,
        time_budget_seconds=VERIFY_TIME_BUDGET_SECONDS,
        collection_id=collection_id,
    )
    return report.to_dict()


def run_action(
    *,
    request: ActionRequest,
    conn: Connection,
    alchemy: Callable[[], AlchemyClient],
    publisher: Callable[[], EventPublisher],
) -> dict[str, object]:
    """Dispatch one validated action; the answer is ``{action, result}``. The Alchemy client and the
    publisher are created only for the actions that need them."""
    result: dict[str, object]
    match request.action:
        case "discovery-stats":
            result = discovery_stats(conn=conn)
        case "sync":
            assert request.contract_address is not None  # noqa: S101 - parse_action_request guarantees it
            result = sync_collection_owners(
                conn=conn, alchemy=alchemy(), publisher=publisher(), contract_address=request.contract_address
            )
        case "verify":
            result = verify_now(
                conn=conn, alchemy=alchemy(), publisher=publisher(), contract_address=request.contract_address
            )
    return {"action": request.action, "result": result}
