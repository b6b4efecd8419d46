"""The event schemas: normalization, wire names, the registry, the envelope, and every events/ sample."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from such_market.events.models import (
    DETAIL_TYPES,
    CacheCleared,
    CollectionUpdated,
    Event,
    InvalidEventError,
    NftTransferred,
    OwnershipChanged,
    parse_detail,
)
from such_market.events.wire import put_events_entry
from such_market.validation import MAX_UINT256, normalize_address, normalize_uint256

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "events").glob("event_*.json"))
ADDRESS = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
TX_HASH = "0x" + "ef" * 32

SPEC_FIELDS = {
    "collection.updated": {"contractAddress", "reason"},
    "collection.refreshed": {"contractAddress", "reason"},
    "nft.transferred": {
        "contractAddress",
        "tokenId",
        "from",
        "to",
        "amount",
        "blockNumber",
        "txHash",
        "logIndex",
        "removed",
    },
    "ownership.changed": {"contractAddress", "tokenIds", "wallets"},
    "user.updated": {"fid", "wallets"},
    "cache.cleared": {"scope", "by"},
    "collection.ingest_requested": {"contractAddress", "reason"},
    "cache.performance_test_requested": {"runId", "profile"},
}

hex_digit = st.sampled_from("0123456789abcdefABCDEF")


def _transfer(**overrides: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "occurredAt": "2025-01-15T12:00:00Z",
        "schemaVersion": 1,
        "contractAddress": ADDRESS,
        "tokenId": "1",
        "from": ADDRESS,
        "to": OTHER,
        "amount": "1",
        "blockNumber": 1,
        "txHash": TX_HASH,
        "logIndex": 0,
        "removed": False,
    }
    detail.update(overrides)
    return detail


# --- addresses ---------------------------------------------------------------------------------


@given(st.text(hex_digit, min_size=40, max_size=40))
def test_any_case_address_is_lower_cased(digits: str) -> None:
    # Given 0x + 40 hex digits in any case
    # When it is normalized
    # Then the result is the lower-case form
    assert normalize_address("0x" + digits) == "0x" + digits.lower()


@given(st.text(max_size=60))
def test_address_parser_accepts_exactly_the_address_shape(value: str) -> None:
    # Given arbitrary text
    # When it is normalized
    # Then it is accepted only when it is 0x + 40 hex digits, and the result always has that shape
    shaped = len(value) == 42 and value.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in value[2:])
    if shaped:
        assert normalize_address(value) == value.lower()
    else:
        with pytest.raises(ValueError, match="40 hexadecimal"):
            normalize_address(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0x",
        ADDRESS[:-1],
        ADDRESS + "0",
        "0X" + "ab" * 20,
        "0x" + "g" * 40,
        " " + ADDRESS,
        ADDRESS + "\n",
        42,
    ],
)
def test_malformed_addresses_are_rejected(value: object) -> None:
    # Given a value that is not exactly 0x + 40 hex digits
    # When it is normalized
    # Then it is rejected
    with pytest.raises(ValueError, match="40 hexadecimal"):
        normalize_address(value)


# --- token ids ---------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_UINT256), st.integers(min_value=0, max_value=3))
def test_decimal_token_ids_round_trip(number: int, leading_zeros: int) -> None:
    # Given a uint256 written in decimal, possibly with leading zeros (or given as an int)
    text = "0" * leading_zeros + str(number)
    # When it is normalized
    # Then the result is its canonical decimal form
    if len(text) <= 78:
        assert normalize_uint256(text) == str(number)
    assert normalize_uint256(number) == str(number)


@given(st.integers(min_value=MAX_UINT256 + 1, max_value=MAX_UINT256 * 8))
def test_token_ids_above_uint256_are_rejected(number: int) -> None:
    # Given a number above 2**256-1
    # When it is normalized, as text or as an int
    # Then it is rejected
    for value in (str(number), number):
        with pytest.raises(ValueError, match=r"2\*\*256-1|decimal"):
            normalize_uint256(value)


@given(st.text(max_size=90).filter(lambda s: not (s.isascii() and s.isdigit())))
def test_non_decimal_token_ids_are_rejected(value: str) -> None:
    # Given text that is not made of ASCII decimal digits (hex, signs, spaces, unicode digits, empty)
    # When it is normalized
    # Then it is rejected
    with pytest.raises(ValueError, match="decimal"):
        normalize_uint256(value)


@pytest.mark.parametrize("value", [-1, True, 1.0, "0x10", "-1", "+1", "1e3", None])
def test_token_ids_of_other_shapes_are_rejected(value: object) -> None:
    # Given a negative number, a bool, a float, hex or an exponent
    # When it is normalized
    # Then it is rejected
    with pytest.raises(ValueError, match=r"decimal|2\*\*256-1"):
        normalize_uint256(value)


# --- models --------------------------------------------------------------------------------------


def test_defaults_give_a_fresh_uuid_a_utc_time_and_version_1() -> None:
    # Given a detail built from its own fields only
    # When two are created
    first = CollectionUpdated(contract_address=ADDRESS, reason="test")
    second = CollectionUpdated(contract_address=ADDRESS, reason="test")
    # Then each has its own uuid4, an aware UTC time and schema version 1
    assert uuid.UUID(first.event_id).version == 4
    assert first.event_id != second.event_id
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert first.schema_version == 1


def test_wire_names_are_camel_case_and_from_is_an_alias() -> None:
    # Given a transfer built with Python names, and one parsed from wire names
    by_name = NftTransferred(
        contract_address=ADDRESS.upper().replace("0X", "0x"),
        token_id=7,
        from_=ADDRESS,
        to=OTHER,
        block_number=10,
        tx_hash=TX_HASH.upper().replace("0X", "0x"),
        log_index=3,
    )
    wire = orjson.loads(by_name.dump_json())
    by_alias = NftTransferred.model_validate(wire)
    # Then the wire form uses camelCase and "from", values are normalized, and both forms are equal
    assert set(wire) == {"eventId", "occurredAt", "schemaVersion"} | SPEC_FIELDS["nft.transferred"]
    assert wire["from"] == ADDRESS
    assert wire["contractAddress"] == ADDRESS
    assert wire["txHash"] == TX_HASH
    assert wire["tokenId"] == "7"
    assert wire["amount"] == "1"
    assert wire["occurredAt"].endswith("Z")
    assert by_alias == by_name


def test_times_are_converted_to_utc_and_naive_times_are_rejected() -> None:
    # Given an occurredAt in another time zone, and a naive one
    local = datetime(2025, 1, 15, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    # When details are built
    detail = CacheCleared(scope="all", by="admin", occurred_at=local)
    # Then the aware time is stored in UTC and the naive one is rejected
    assert detail.occurred_at == datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    assert detail.occurred_at.tzinfo is UTC
    with pytest.raises(ValidationError):
        CacheCleared(scope="all", by="admin", occurred_at=datetime(2025, 1, 15, 12, 0))


def test_lists_are_normalized_and_bounded() -> None:
    # Given an ownership change with mixed-case wallets and padded token ids
    detail = OwnershipChanged(contract_address=ADDRESS, token_ids=["001", 2], wallets=["0x" + ADDRESS[2:].upper()])
    # Then the ids and wallets are canonical; and more than 1000 items are rejected
    assert detail.token_ids == ("1", "2")
    assert detail.wallets == (ADDRESS,)
    with pytest.raises(ValidationError):
        OwnershipChanged(contract_address=ADDRESS, token_ids=["1"] * 1001, wallets=[])


def test_registry_holds_exactly_the_spec_detail_types_with_their_fields() -> None:
    # Given the registry
    # Then it names every detail type of SPEC §6, and each model carries the SPEC fields on the wire
    assert set(DETAIL_TYPES) == set(SPEC_FIELDS)
    for detail_type, model in DETAIL_TYPES.items():
        assert detail_type == model.DETAIL_TYPE
        wire_names = {field.alias or name for name, field in model.model_fields.items()}
        assert wire_names == {"eventId", "occurredAt", "schemaVersion"} | SPEC_FIELDS[detail_type]


# --- parse_detail ----------------------------------------------------------------------------------


def test_parse_detail_returns_the_model_of_the_detail_type() -> None:
    # Given a valid transfer detail from the wire
    # When it is parsed
    detail = parse_detail("nft.transferred", _transfer())
    # Then it is a NftTransferred
    assert isinstance(detail, NftTransferred)


@pytest.mark.parametrize(
    ("detail_type", "detail", "message"),
    [
        ("nft.minted", _transfer(), "unknown detail type"),
        ("nft.transferred", ["not", "an", "object"], "not a JSON object"),
        ("nft.transferred", {k: v for k, v in _transfer().items() if k != "eventId"}, "lacks eventId"),
        ("nft.transferred", {k: v for k, v in _transfer().items() if k != "occurredAt"}, "lacks occurredAt"),
        ("nft.transferred", _transfer(schemaVersion=2), "schemaVersion"),
        ("nft.transferred", _transfer(eventId="not-a-uuid"), "eventId"),
        ("nft.transferred", _transfer(tokenId="-1"), "tokenId"),
        ("nft.transferred", _transfer(contractAddress="0x123"), "contractAddress"),
        ("nft.transferred", _transfer(blockNumber=-5), "blockNumber"),
        (
            "cache.cleared",
            {
                "eventId": str(uuid.uuid4()),
                "occurredAt": "2025-01-15T12:00:00Z",
                "schemaVersion": 1,
                "scope": "everything",
                "by": "admin",
            },
            "scope",
        ),
    ],
)
def test_parse_detail_rejects_bad_details_with_a_clear_error(detail_type: str, detail: Any, message: str) -> None:
    # Given an unknown detail type or a detail that breaks its schema
    # When it is parsed
    # Then InvalidEventError names the problem
    with pytest.raises(InvalidEventError, match=message):
        parse_detail(detail_type, detail)


def test_unknown_fields_are_ignored() -> None:
    # Given a detail from a newer producer with an extra optional field
    # When it is parsed
    detail = parse_detail("nft.transferred", _transfer(chainId=8453))
    # Then it is accepted and the extra field is not carried
    assert "chainId" not in orjson.loads(detail.dump_json())


# --- the envelope --------------------------------------------------------------------------------


def test_to_entry_builds_a_put_events_entry() -> None:
    # Given an event
    event = Event(CollectionUpdated(contract_address=ADDRESS, reason="test"))
    # When it becomes a PutEvents entry
    entry = put_events_entry(event, "such-market", "such-market")
    # Then the entry names the bus, source and detail type, and its Detail parses back to the event
    assert entry["EventBusName"] == "such-market"
    assert entry["Source"] == "such-market"
    assert entry["DetailType"] == "collection.updated"
    assert entry["Time"] == event.detail.occurred_at
    assert parse_detail(entry["DetailType"], orjson.loads(entry["Detail"])) == event.detail
    assert event.event_id == event.detail.event_id


def test_from_eventbridge_rejects_events_without_detail() -> None:
    # Given something that is not an EventBridge event
    # When it is parsed
    # Then InvalidEventError says so
    with pytest.raises(InvalidEventError, match="detail-type or detail"):
        Event.from_eventbridge({"detail-type": "collection.updated"})


# --- samples ---------------------------------------------------------------------------------------


def test_every_detail_type_has_a_sample() -> None:
    # Given the events/ folder
    # Then it holds one sample per detail type, named after it
    names = {path.stem.removeprefix("event_") for path in SAMPLES}
    assert names == {detail_type.replace(".", "_") for detail_type in DETAIL_TYPES}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_samples_round_trip_through_the_models(path: Path) -> None:
    # Given a sample EventBridge event
    raw = json.loads(path.read_text())
    # When it is parsed and serialized again
    event = Event.from_eventbridge(raw)
    # Then it is a full envelope from our source, and the detail survives unchanged
    assert {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    } <= set(raw)
    assert raw["source"] == "such-market"
    assert path.stem == "event_" + event.detail_type.replace(".", "_")
    assert orjson.loads(event.detail.dump_json()) == raw["detail"]
    assert orjson.loads(put_events_entry(event, "such-market", "such-market")["Detail"]) == raw["detail"]
