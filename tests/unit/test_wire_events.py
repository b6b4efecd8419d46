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
    ownership_changes,
    put_events_entry,
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
    assert put_events_entry(built, "bus", "such-market") == put_events_entry(modelled, "bus", "such-market")
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
    assert put_events_entry(built, "bus", "such-market") == put_events_entry(modelled, "bus", "such-market")


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
    assert put_events_entry(built, "bus", "such-market") == put_events_entry(modelled, "bus", "such-market")


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


# -- details read in wire form (EventConsumer.on_wire) ------------------------------------------------------
_RUN = {
    "eventId": "5f0c5d4e-3b2a-4c1d-9e8f-7a6b5c4d3e2f",
    "occurredAt": "2026-12-06T12:00:00.123456Z",
    "schemaVersion": 1,
    "runId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "profile": "quick",
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"eventId": "5F0C5D4E-3B2A-4C1D-9E8F-7A6B5C4D3E2F"},
        {"eventId": "not-a-uuid"},
        {"eventId": 7},
        {"occurredAt": "2026-12-06T12:00:00+02:00"},
        {"occurredAt": "2026-12-06T12:00:00"},
        {"occurredAt": "yesterday"},
        {"occurredAt": 1796558326},
        {"schemaVersion": 2},
        {"schemaVersion": True},
        {"schemaVersion": "1"},
        {"runId": "0F1E2D3C4B5A69788796A5B4C3D2E1F0"},
        {"runId": "0f1e2d3c"},
        {"runId": None},
        {"profile": "huge"},
        {"profile": None},
        {"unknown": "ignored"},
        {"eventId": ...},  # ... : the field is left out
        {"profile": ...},
    ],
)
def test_a_run_request_read_in_wire_form_never_accepts_what_the_model_refuses(change: dict[str, Any]) -> None:
    from such_market.errors import InvalidEventError
    from such_market.events.models import CachePerformanceTestRequested
    from such_market.perftest.service import read_run_request

    detail = {name: value for name, value in {**_RUN, **change}.items() if value is not ...}
    try:
        modelled = parse_detail("cache.performance_test_requested", detail)
    except InvalidEventError:
        modelled = None
    try:
        read = read_run_request(detail)
    except InvalidEventError:
        read = None
    if read is not None:  # accepted in wire form: the model accepts it too, with the same values
        assert isinstance(modelled, CachePerformanceTestRequested)
        assert (read.event_id, read.run_id, read.profile) == (modelled.event_id, modelled.run_id, modelled.profile)
    if not change or set(change) == {"unknown"}:  # what our producer publishes: read both ways
        assert read is not None
        assert modelled is not None


def test_ownership_changes_split_every_list_at_the_bound() -> None:
    wallets = ["0x" + f"{index:040x}" for index in range(5)]
    events = ownership_changes(ADDRESS, list(range(2 * MAX_LIST_ITEMS + 1)), wallets)
    details = [orjson.loads(event.detail_json()) for event in events]
    assert [len(detail["tokenIds"]) for detail in details] == [MAX_LIST_ITEMS, MAX_LIST_ITEMS, 1]
    assert [detail["wallets"] for detail in details] == [wallets, [], []]
    assert [detail["tokenIds"][0] for detail in details] == ["0", str(MAX_LIST_ITEMS), str(2 * MAX_LIST_ITEMS)]
    assert ownership_changes(ADDRESS, [], []) == []
