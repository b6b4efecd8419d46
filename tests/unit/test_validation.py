"""Request input parsing: every bad value is a 400 with a machine code; good values are normalized."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from such_market.errors import BadRequestError
from such_market.validation import (
    MAX_UINT256,
    encode_cursor,
    filter_hash,
    parse_address,
    parse_cursor,
    parse_fid,
    parse_page,
    parse_page_size,
    parse_token_id,
    parse_trait_filters,
)

hex_digits = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40)


@given(hex_digits)
def test_any_case_address_is_lower_cased(digits: str) -> None:
    assert parse_address("0x" + digits) == "0x" + digits.lower()


@pytest.mark.parametrize(
    "value", [None, "", "0x", "0x123", "0x" + "g" * 40, "ab" * 21, "0x" + "a" * 41, " 0x" + "a" * 40]
)
def test_bad_address_is_400(value: str | None) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_address(value)
    assert (raised.value.status, raised.value.code) == (400, "invalid_address")


@given(st.integers(min_value=0, max_value=MAX_UINT256))
def test_token_ids_parse_from_decimal_and_hex(number: int) -> None:
    assert parse_token_id(str(number)) == number
    assert parse_token_id(hex(number)) == number


@pytest.mark.parametrize(
    "value", [None, "", "-1", "1.5", "abc", "0x", "1e3", str(MAX_UINT256 + 1), "9" * 79, "0x" + "f" * 65]
)
def test_bad_token_id_is_400(value: str | None) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_token_id(value)
    assert raised.value.code == "invalid_token_id"


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("0", 0), ("42", 42)])
def test_page(value: str | None, expected: int) -> None:
    assert parse_page(value) == expected


@pytest.mark.parametrize("value", ["-1", "x", "1.0", "10000001", ""])
def test_bad_page_is_400(value: str) -> None:
    with pytest.raises(BadRequestError, match="page"):
        parse_page(value)


@pytest.mark.parametrize(("value", "expected"), [(None, 20), ("1", 1), ("100", 100)])
def test_page_size(value: str | None, expected: int) -> None:
    assert parse_page_size(value) == expected


@pytest.mark.parametrize("value", ["0", "101", "-5", "ten", ""])
def test_bad_page_size_is_400(value: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_page_size(value)
    assert raised.value.code == "invalid_page_size"


@pytest.mark.parametrize("value", [None, "0", "-3", "abc", "9" * 20, "1.5"])
def test_bad_fid_is_400(value: str | None) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_fid(value)
    assert raised.value.code == "invalid_fid"


def test_trait_filters_are_normalized_and_hashed_stably() -> None:
    first = parse_trait_filters({"trait.Hat": "Crown,Cap", "trait.Eyes": "Blue", "page": "1"})
    second = parse_trait_filters({"trait.Eyes": "Blue", "trait.Hat": "Cap, Crown"})
    assert first == second == {"Eyes": ("Blue",), "Hat": ("Cap", "Crown")}
    assert filter_hash(first) == filter_hash(second) is not None
    assert filter_hash({}) is None


@pytest.mark.parametrize(
    "query",
    [
        {"trait.": "x"},
        {"trait.Hat": ""},
        {"trait.Hat": ",,"},
        {"trait.Hat": "x" * 201},
        {f"trait.t{i}": "v" for i in range(11)},
    ],
)
def test_bad_trait_filters_are_400(query: dict[str, str]) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_trait_filters(query)
    assert raised.value.code == "invalid_filter"


@given(st.integers(min_value=0, max_value=MAX_UINT256))
def test_cursor_round_trip(token_id: int) -> None:
    assert parse_cursor(encode_cursor(token_id)) == token_id


@pytest.mark.parametrize("value", ["", "!!", "dDp4", "eDox", encode_cursor(1)[:-1] + "*"])
def test_bad_cursor_is_400(value: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_cursor(value)
    assert raised.value.code == "invalid_cursor"
