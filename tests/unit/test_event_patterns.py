"""EventBridge event-pattern matching of the local bus (local.bus.matches_pattern)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.bus import PatternError, flatten_event, matches_pattern, validate_pattern

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "nft.transferred",
    "source": "such-market",
    "account": "123456789012",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-1", "arn:aws:s3:::bucket"],
    "detail": {
        "contractAddress": "0xAbC0000000000000000000000000000000000001",
        "tokenId": "42",
        "amount": 5,
        "price": 0.25,
        "removed": False,
        "note": None,
        "empty": "",
        "sourceIp": "10.0.3.7",
        "file": "images/cat.png",
        "wallets": ["0x1", "0x2"],
        "items": [{"kind": "erc721", "qty": 1}, {"kind": "erc1155", "qty": 7}],
        "meta": {"chain": "base", "tags": ["hot", "new"]},
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # plain values and nesting
        ({"source": ["such-market"]}, True),
        ({"source": ["other", "such-market"]}, True),
        ({"source": ["other"]}, False),
        ({"detail": {"meta": {"chain": ["base"]}}}, True),
        ({"detail": {"meta": {"chain": ["eth"]}}}, False),
        ({"source": ["such-market"], "detail-type": ["collection.updated"]}, False),
        # types matter: a number is not its string, a boolean is not a number
        ({"detail": {"amount": [5]}}, True),
        ({"detail": {"amount": [5.0]}}, True),
        ({"detail": {"amount": ["5"]}}, False),
        ({"detail": {"removed": [False]}}, True),
        ({"detail": {"removed": [0]}}, False),
        ({"detail": {"note": [None]}}, True),
        ({"detail": {"missing": [None]}}, False),
        ({"detail": {"empty": [""]}}, True),
        # arrays in the event: any element matches
        ({"resources": ["arn:aws:s3:::bucket"]}, True),
        ({"detail": {"wallets": ["0x2", "0x9"]}}, True),
        ({"detail": {"wallets": ["0x9"]}}, False),
        ({"detail": {"meta": {"tags": ["new"]}}}, True),
        # arrays of objects flatten field by field
        ({"detail": {"items": {"kind": ["erc1155"]}}}, True),
        ({"detail": {"items": {"kind": ["erc20"]}}}, False),
        ({"detail": {"items": {"qty": [{"numeric": [">", 5]}]}}}, True),
        # prefix / suffix / equals-ignore-case
        ({"detail-type": [{"prefix": "nft."}]}, True),
        ({"detail-type": [{"prefix": "collection."}]}, False),
        ({"detail": {"file": [{"suffix": ".png"}]}}, True),
        ({"detail": {"file": [{"suffix": ".PNG"}]}}, False),
        ({"detail": {"file": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}, True),
        ({"detail": {"contractAddress": [{"prefix": {"equals-ignore-case": "0xabc"}}]}}, True),
        ({"detail": {"contractAddress": [{"equals-ignore-case": "0xabc0000000000000000000000000000000000001"}]}}, True),
        ({"detail": {"amount": [{"prefix": "5"}]}}, False),
        # anything-but
        ({"source": [{"anything-but": "other"}]}, True),
        ({"source": [{"anything-but": "such-market"}]}, False),
        ({"source": [{"anything-but": ["a", "such-market"]}]}, False),
        ({"detail": {"amount": [{"anything-but": [1, 2]}]}}, True),
        ({"detail": {"amount": [{"anything-but": 5}]}}, False),
        ({"detail-type": [{"anything-but": {"prefix": "nft."}}]}, False),
        ({"detail-type": [{"anything-but": {"prefix": "collection."}}]}, True),
        ({"detail": {"file": [{"anything-but": {"suffix": ".png"}}]}}, False),
        ({"source": [{"anything-but": {"equals-ignore-case": ["SUCH-MARKET"]}}]}, False),
        ({"detail": {"missing": [{"anything-but": "x"}]}}, False),
        ({"detail": {"wallets": [{"anything-but": "0x1"}]}}, True),
        # exists
        ({"detail": {"tokenId": [{"exists": True}]}}, True),
        ({"detail": {"tokenId": [{"exists": False}]}}, False),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"note": [{"exists": True}]}}, True),
        ({"detail": {"meta": [{"exists": True}]}}, False),  # exists only sees leaves
        ({"nothing": {"deeper": [{"exists": False}]}}, True),
        # numeric
        ({"detail": {"amount": [{"numeric": [">", 0, "<=", 5]}]}}, True),
        ({"detail": {"amount": [{"numeric": [">", 5]}]}}, False),
        ({"detail": {"price": [{"numeric": ["=", 0.25]}]}}, True),
        ({"detail": {"tokenId": [{"numeric": [">", 0]}]}}, False),
        ({"detail": {"removed": [{"numeric": ["=", 0]}]}}, False),
        # cidr and wildcard
        ({"detail": {"sourceIp": [{"cidr": "10.0.0.0/16"}]}}, True),
        ({"detail": {"sourceIp": [{"cidr": "192.168.0.0/16"}]}}, False),
        ({"detail": {"file": [{"wildcard": "images/*.png"}]}}, True),
        ({"detail": {"file": [{"wildcard": "*.jpg"}]}}, False),
        # several matchers: any; several fields: all
        ({"detail": {"amount": [{"numeric": ["<", 0]}, 5]}}, True),
        ({"source": ["such-market"], "detail": {"amount": [6]}}, False),
        # $or
        ({"$or": [{"source": ["x"]}, {"detail": {"amount": [5]}}]}, True),
        ({"$or": [{"source": ["x"]}, {"detail": {"amount": [6]}}]}, False),
        ({"detail": {"$or": [{"amount": [6]}, {"tokenId": ["42"]}]}}, True),
    ],
)
def test_pattern_matching(pattern: dict[str, Any], expected: bool) -> None:
    # Given a valid pattern
    validate_pattern(pattern)
    # When the sample event is matched against it
    # Then the result is EventBridge's
    assert matches_pattern(pattern, EVENT) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        {},
        {"source": "such-market"},
        {"source": []},
        {"source": [["nested"]]},
        {"source": [{"unknown-op": "x"}]},
        {"source": [{"prefix": "a", "suffix": "b"}]},
        {"detail": {"amount": [{"numeric": [">"]}]}},
        {"detail": {"amount": [{"numeric": ["!=", 1]}]}},
        {"detail": {"amount": [{"numeric": [">", "1"]}]}},
        {"detail": {"x": [{"exists": "yes"}]}},
        {"detail": {"x": [{"cidr": "not-a-network"}]}},
        {"detail": {"x": [{"anything-but": {"numeric": [">", 1]}}]}},
        {"$or": [{"source": ["x"]}]},
    ],
)
def test_invalid_patterns_are_refused(pattern: Any) -> None:
    # Given a pattern EventBridge would reject
    # When it is validated
    # Then PatternError names the problem
    with pytest.raises(PatternError):
        validate_pattern(pattern)


def test_flatten_event_collects_array_values_by_path() -> None:
    # Given an event with arrays of scalars and of objects
    event = {"a": [1, 2], "b": [{"c": "x"}, {"c": "y", "d": None}], "e": {}}
    # When it is flattened
    leaves = flatten_event(event)
    # Then each leaf path lists every value, and empty objects contribute nothing
    assert leaves == {("a",): [1, 2], ("b", "c"): ["x", "y"], ("b", "d"): [None]}


# ---------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------

keys = st.text(alphabet="abcdefgh-_", min_size=1, max_size=6)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=12,
)
events = st.dictionaries(keys, documents, min_size=1, max_size=5)


def _pattern_for(path: tuple[str, ...], matchers: list[Any]) -> dict[str, Any]:
    pattern: Any = matchers
    for key in reversed(path):
        pattern = {key: pattern}
    return pattern


@given(events)
def test_every_leaf_of_an_event_matches_a_pattern_naming_it(event: dict[str, Any]) -> None:
    # Given any event and any of its leaf values
    for path, values in flatten_event(event).items():
        for value in values:
            # When a pattern names exactly that value at that path
            pattern = _pattern_for(path, [value])
            # Then the event matches it, and exists:true matches while exists:false does not
            assert matches_pattern(pattern, event)
            assert matches_pattern(_pattern_for(path, [{"exists": True}]), event)
            assert not matches_pattern(_pattern_for(path, [{"exists": False}]), event)


@given(events, st.text(alphabet="xyz", min_size=1, max_size=3))
def test_exists_true_and_false_are_complementary(event: dict[str, Any], key: str) -> None:
    # Given any event and any field name
    present = matches_pattern({key: [{"exists": True}]}, event)
    absent = matches_pattern({key: [{"exists": False}]}, event)
    # Then exactly one of exists:true / exists:false matches
    assert present != absent


@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12))
def test_prefix_and_suffix_agree_with_str_methods(head: str, middle: str, tail: str) -> None:
    # Given a string field built from three parts
    event = {"detail": {"s": head + middle + tail}}
    # When it is matched with a prefix of its head and a suffix of its tail
    # Then both match, and anything-but of the exact value does not
    assert matches_pattern({"detail": {"s": [{"prefix": head}]}}, event)
    assert matches_pattern({"detail": {"s": [{"suffix": tail}]}}, event)
    assert not matches_pattern({"detail": {"s": [{"anything-but": head + middle + tail}]}}, event)


@given(st.text(max_size=16).filter(lambda s: s.swapcase().casefold() == s.casefold()))
def test_equals_ignore_case_matches_any_casing(text: str) -> None:
    # Given a string field
    event = {"s": text}
    # When it is matched ignoring case against its swapped casing
    # Then it matches
    assert matches_pattern({"s": [{"equals-ignore-case": text.swapcase()}]}, event)


@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_numeric_ranges_agree_with_comparisons(value: float, low: float, high: float) -> None:
    # Given a numeric field and a closed-open range
    event = {"n": value}
    pattern = {"n": [{"numeric": [">=", low, "<", high]}]}
    # When it is matched
    # Then it matches exactly when low <= value < high
    assert matches_pattern(pattern, event) == (low <= value < high)


@given(scalars, st.lists(scalars, min_size=1, max_size=4))
def test_anything_but_is_the_complement_of_a_value_list(value: Any, excluded: list[Any]) -> None:
    # Given a scalar field (not null: anything-but lists plain values) and a list of values
    event = {"v": value}
    listed = matches_pattern({"v": excluded}, event)
    # When it is matched with anything-but of that list
    # Then it matches exactly when the plain list does not
    assert matches_pattern({"v": [{"anything-but": excluded}]}, event) == (not listed)
