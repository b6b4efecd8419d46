"""Events built in their wire form (``such_market.events.wire``) on cold paths: each is what its model would
build, byte for byte, and refuses what its model refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from such_market.events.models import (
    CollectionIngestRequested,
    CollectionUpdated,
    Event,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
    parse_detail,
)
from such_market.events.wire import (
    MAX_LABEL_LENGTH,
    MAX_LIST_ITEMS,
    WireEvent,
    check_addresses,
    collection_updated,
    ingest_requested,
    nft_transferred,
    ownership_changed,
)
from such_market.users.service import user_updated

ADDRESS = "0x" + "ab" * 20


def test_user_updated_is_byte_for_byte_what_the_model_would_publish() -> None:
    built = user_updated(7, ["0x" + "CD" * 20, ADDRESS, "0x" + "cd" * 20])
    modelled = Event(
        UserUpdated(
            fid=7,
            wallets=(ADDRESS, "0x" + "cd" * 20),
            event_id=built.event_id,
            occurred_at=built.occurred_at,
        )
    )
    assert built.to_entry("bus", "such-market") == modelled.to_entry("bus", "such-market")
    assert built.detail_json() == modelled.detail_json()
    assert parse_detail("user.updated", orjson.loads(built.detail_json())) == modelled.detail


@pytest.mark.parametrize(
    ("fid", "wallets"),
    [
        (0, [ADDRESS]),
        (-3, [ADDRESS]),
        (7, ["0x1234"]),
        (7, [ADDRESS + "00"]),
        (7, ["0x" + f"{index:040x}" for index in range(MAX_LIST_ITEMS + 1)]),
    ],
)
def test_user_updated_refuses_what_the_model_refuses(fid: int, wallets: list[str]) -> None:
    with pytest.raises(ValidationError):
        UserUpdated(fid=fid, wallets=tuple(wallets))
    with pytest.raises(ValueError, match=r"fid|address"):
        user_updated(fid, wallets)


def test_the_list_bound_counts_distinct_wallets_as_the_model_does() -> None:
    wallets = ["0x" + f"{index:040x}" for index in range(MAX_LIST_ITEMS)]
    assert len(orjson.loads(user_updated(1, wallets + wallets).detail_json())["wallets"]) == MAX_LIST_ITEMS


def test_check_addresses_names_the_bad_item() -> None:
    assert check_addresses([ADDRESS.upper().replace("0X", "0x")]) == [ADDRESS]
    with pytest.raises(ValueError, match=r"address 1 \('nope'\)"):
        check_addresses([ADDRESS, "nope"])


def test_ingest_requested_is_byte_for_byte_what_the_model_would_publish() -> None:
    built = ingest_requested(ADDRESS.upper().replace("0X", "0x"), "refresh")
    modelled = Event(
        CollectionIngestRequested(
            contract_address=ADDRESS, reason="refresh", event_id=built.event_id, occurred_at=built.occurred_at
        )
    )
    assert built.to_entry("bus", "such-market") == modelled.to_entry("bus", "such-market")


@pytest.mark.parametrize(("address", "reason"), [("0x1234", "refresh"), (ADDRESS, ""), (ADDRESS, "r" * 201)])
def test_ingest_requested_refuses_what_the_model_refuses(address: str, reason: str) -> None:
    assert MAX_LABEL_LENGTH == 200
    with pytest.raises(ValidationError):
        CollectionIngestRequested(contract_address=address, reason=reason)
    with pytest.raises(ValueError, match=r"reason|hexadecimal"):
        ingest_requested(address, reason)


def _same_as_model(built: WireEvent, model: type[Any], **fields: Any) -> None:
    """``built`` publishes exactly what ``model`` with ``fields`` (and ``built``'s id and time) would."""
    modelled = Event(model(**fields, event_id=built.event_id, occurred_at=built.occurred_at))
    assert built.to_entry("bus", "such-market") == modelled.to_entry("bus", "such-market")


UPPER = "0x" + "AB" * 20
TX = "0x" + "Cd" * 32


def test_collection_updated_is_what_the_model_would_publish() -> None:
    _same_as_model(
        collection_updated(UPPER, "tokens_listed"), CollectionUpdated, contract_address=UPPER, reason="tokens_listed"
    )


@pytest.mark.parametrize("removed", [False, True])
def test_nft_transferred_is_what_the_model_would_publish(removed: bool) -> None:
    built = nft_transferred(
        contract_address=UPPER,
        token_id=2**256 - 1,
        from_address="0x" + "00" * 20,
        to_address=UPPER,
        amount=7,
        block_number=21_000_000,
        tx_hash=TX,
        log_index=0,
        removed=removed,
    )
    _same_as_model(
        built,
        NftTransferred,
        contract_address=UPPER,
        token_id=str(2**256 - 1),
        from_="0x" + "00" * 20,
        to=UPPER,
        amount="7",
        block_number=21_000_000,
        tx_hash=TX,
        log_index=0,
        removed=removed,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"token_id": 2**256},
        {"token_id": -1},
        {"amount": 2**256},
        {"tx_hash": "0x1234"},
        {"block_number": -1},
        {"log_index": -1},
        {"to_address": "0x12"},
    ],
)
def test_nft_transferred_refuses_what_the_model_refuses(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "contract_address": ADDRESS,
        "token_id": 1,
        "from_address": ADDRESS,
        "to_address": ADDRESS,
        "amount": 1,
        "block_number": 1,
        "tx_hash": TX,
        "log_index": 1,
        "removed": False,
        **change,
    }
    modelled = {
        ("from_" if name == "from_address" else "to" if name == "to_address" else name): value
        for name, value in fields.items()
    }
    with pytest.raises(ValidationError):
        NftTransferred(**modelled)
    with pytest.raises(ValueError):  # noqa: PT011 - each field's own message
        nft_transferred(**fields)


def test_ownership_changed_is_what_the_model_would_publish() -> None:
    built = ownership_changed(UPPER, [3, 2**200], [UPPER, "0x" + "01" * 20])
    _same_as_model(
        built, OwnershipChanged, contract_address=UPPER, token_ids=("3", str(2**200)), wallets=(UPPER, "0x" + "01" * 20)
    )


@pytest.mark.parametrize(
    ("token_ids", "wallets"),
    [([2**256], [ADDRESS]), ([1], ["0x12"]), (list(range(MAX_LIST_ITEMS + 1)), [ADDRESS])],
)
def test_ownership_changed_refuses_what_the_model_refuses(token_ids: list[int], wallets: list[str]) -> None:
    with pytest.raises(ValidationError):
        OwnershipChanged(contract_address=ADDRESS, token_ids=tuple(map(str, token_ids)), wallets=tuple(wallets))
    with pytest.raises(ValueError):  # noqa: PT011 - each field's own message
        ownership_changed(ADDRESS, token_ids, wallets)
