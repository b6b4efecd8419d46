"""Request input parsing: every bad value is a 400 with a machine code; good values are normalized."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from such_market.errors import BadRequestError
from such_market.validation import (
    CURSOR_PATTERN,
    MAX_UINT256,
    TOKEN_ID_PATTERN,
    encode_cursor,
    filter_hash,
    parse_address,
    parse_cursor,
    parse_fid,
    parse_json_object,
    parse_page,
    parse_page_size,
    parse_token_id,
    parse_trait_filters,
    reject_control_characters,
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


# -- the formats the OpenAPI document declares are exactly what the parsers accept -----------------------
@given(st.from_regex(f"^(?:{CURSOR_PATTERN})$", fullmatch=True))
def test_every_cursor_the_document_allows_is_accepted(value: str) -> None:
    assert parse_cursor(value) is not None


@given(st.integers(min_value=0, max_value=10**77 - 1))
def test_every_cursor_written_matches_the_documented_pattern(token_id: int) -> None:
    assert re.fullmatch(CURSOR_PATTERN, encode_cursor(token_id))


@pytest.mark.parametrize("value", [encode_cursor(1) + "=", encode_cursor(12)[:-1] + "B", " " + encode_cursor(1)])
def test_only_the_canonical_cursor_is_accepted(value: str) -> None:
    with pytest.raises(BadRequestError):
        parse_cursor(value)


@given(st.from_regex(f"^(?:{TOKEN_ID_PATTERN})$", fullmatch=True))
def test_every_token_id_the_document_allows_is_accepted(value: str) -> None:
    assert parse_token_id(value) >= 0


@pytest.mark.parametrize("query", [{"trait.Hat": "Cap\x00"}, {"trait.Ha\x00t": "Cap"}])
def test_a_trait_filter_with_nul_is_400(query: dict[str, str]) -> None:
    # PostgreSQL text cannot hold NUL: it must never reach a query
    with pytest.raises(BadRequestError):
        parse_trait_filters(query)


CONTROL = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x1F),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
    st.characters(categories=["Cs"]),
)
"""C0, DEL, C1 and lone surrogates: what no text input may hold."""
JSON_CONTROL = st.characters(min_codepoint=0, max_codepoint=0x9F).filter(lambda c: c < " " or c >= "\x7f")
"""The control characters JSON can carry (a lone surrogate escape is not valid JSON to orjson)."""


@given(st.text(max_size=20), CONTROL, st.text(max_size=20))
def test_a_control_character_anywhere_in_a_trait_filter_is_400(before: str, control: str, after: str) -> None:
    text = f"{before}{control}{after}"
    for query in ({"trait.Hat": f"Cap,{text}"}, {f"trait.{text}": "Cap"}):
        with pytest.raises(BadRequestError) as raised:
            parse_trait_filters(query)
        assert raised.value.code == "invalid_filter"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20), JSON_CONTROL)
def test_a_control_character_at_any_depth_of_a_json_body_is_400(text: str, control: str) -> None:
    for payload in ({"a": text + control}, {text + control: 1}, {"a": [1, {"b": [control]}]}):
        with pytest.raises(BadRequestError) as raised:
            parse_json_object(orjson.dumps(payload), max_bytes=10_000, shape="{a}")
        assert raised.value.code == "invalid_body"


@given(st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]), max_size=40))
def test_text_without_control_characters_passes(text: str) -> None:
    reject_control_characters({"k": [text], text: text}, field="x")
    assert parse_json_object(orjson.dumps({"k": text}), max_bytes=10_000, shape="{k}") == {"k": text}
