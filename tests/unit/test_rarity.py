"""OpenRarity scores and ranks (``collections.rarity``) equal the reference method's on generated collections
(ranks exactly, scores within math.isclose), including absent types, several values of one type, the
trait count, unique attributes and shared ranks (1, 2, 2, 2, 5); the transcribed reference equals the real
``open-rarity`` package wherever that can be imported."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from such_market.collections.rarity import TRAIT_COUNT, rank_tokens, trait_holders
from tests.fixtures.open_rarity_reference import openrarity_metadata, reference_ranks

Pairs = list[tuple[str, str]]

# Types and values with case and whitespace variants, "none" and empty values, and a type that may hold
# several values on one token.
TYPES = ["Background", "background ", "Hat", "Eyes", "Accessory"]
VALUES = ["Blue", "blue", " Red", "Gold", "none", "", "Laser", "Earring", "Cigarette"]


@st.composite
def collections(draw: st.DrawFn) -> dict[int, Pairs]:
    size = draw(st.integers(min_value=1, max_value=40))
    ids = draw(st.lists(st.integers(min_value=0, max_value=10**6), min_size=size, max_size=size, unique=True))
    pair = st.tuples(st.sampled_from(TYPES), st.sampled_from(VALUES))
    return {token_id: draw(st.lists(pair, max_size=6)) for token_id in ids}


def assert_matches_reference(tokens: dict[int, Pairs]) -> None:
    expected = reference_ranks(openrarity_metadata(tokens))
    ours = rank_tokens(tokens)
    assert [rarity.position for rarity in ours] == list(range(len(tokens)))
    assert [(r.rank, r.token_id) for r in ours] == sorted((r.rank, r.token_id) for r in ours)
    for rarity in ours:
        rank, score = expected[rarity.token_id]
        assert rarity.rank == rank, rarity.token_id
        assert math.isclose(rarity.score, score, rel_tol=1e-9), (rarity.score, score)


@settings(max_examples=300, deadline=None)
@given(collections())
def test_scores_and_ranks_equal_the_reference(tokens: dict[int, Pairs]) -> None:
    assert_matches_reference(tokens)


def test_a_larger_skewed_collection_equals_the_reference() -> None:
    generator = random.Random(18)
    tokens: dict[int, Pairs] = {}
    for token_id in range(2_000):
        pairs = [("Background", f"B{int(generator.paretovariate(1.2)) % 12}")]
        if generator.random() < 0.3:
            pairs.append(("Hat", f"H{generator.randrange(8)}"))
        pairs += [("Accessory", f"A{generator.randrange(20)}") for _ in range(generator.choice([0, 0, 1, 2, 3]))]
        tokens[token_id] = pairs
    assert_matches_reference(tokens)


def test_equal_scores_share_a_rank_and_the_next_rank_skips() -> None:
    tokens: dict[int, Pairs] = {1: [("Hat", "Crown")]}  # the one crown: a unique attribute, rank 1
    tokens |= {token_id: [("Hat", "Cap"), ("Eyes", "Laser")] for token_id in (2, 3, 4)}
    tokens |= {token_id: [("Hat", "Cap"), ("Eyes", "Wide")] for token_id in (5, 6, 7, 8)}
    ours = rank_tokens(tokens)
    assert [(rarity.token_id, rarity.rank) for rarity in ours] == [
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 2),
        (5, 5),
        (6, 5),
        (7, 5),
        (8, 5),
    ]
    assert_matches_reference(tokens)


def test_several_values_of_one_type_become_present_or_absent_traits() -> None:
    tokens: dict[int, Pairs] = {
        0: [("Type", "Male"), ("Accessory", "Earring"), ("Accessory", "Cigarette")],
        1: [("Type", "Male"), ("Accessory", "Earring")],
        2: [("Type", "Female")],
        3: [("Type", "Female"), ("Accessory", "Cigarette"), ("Accessory", " cigarette")],  # the same value
    }
    holders: dict[tuple[str, str], set[int]] = {}
    for token_id, pairs in tokens.items():
        for pair in pairs:
            holders.setdefault(pair, set()).add(token_id)  # token ids 0..3 are their own indexes
    traits = {pair: sorted(indexes) for pair, indexes in trait_holders(4, holders).items()}
    assert traits == {
        ("type", "male"): [0, 1],
        ("type", "female"): [2, 3],
        ("accessory:earring", "earring"): [0, 1],
        ("accessory:cigarette", "cigarette"): [0, 3],
        (TRAIT_COUNT, "3"): [0],
        (TRAIT_COUNT, "2"): [1, 3],
        (TRAIT_COUNT, "1"): [2],
    }
    # Token 2: type female (2 of 4), no earring (2 of 4 lack it), no cigarette (2 of 4), trait count 1 (1 of 4).
    supply = 4
    counts = {"type": 2, "earring": 2, "cigarette": 2}
    entropy = -sum(
        p * math.log2(p)
        for p in [2 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4, 1 / 4, 1 / 4, 2 / 4]  # three traits, then trait counts
    )
    information = sum(-math.log2(count / supply) for count in counts.values()) - math.log2(1 / 4)
    (token_2,) = [rarity for rarity in rank_tokens(tokens) if rarity.token_id == 2]
    assert math.isclose(token_2.score, information / entropy, rel_tol=1e-12)
    assert_matches_reference(tokens)


def test_one_token_and_no_tokens() -> None:
    assert rank_tokens({}) == []
    (only,) = rank_tokens({7: [("Hat", "Cap")]})
    assert (only.token_id, only.rank, only.score, only.position) == (7, 1, 0.0, 0)


@settings(max_examples=60, deadline=None)
@given(collections())
def test_the_transcribed_reference_equals_the_open_rarity_package(tokens: dict[int, Pairs]) -> None:
    open_rarity = pytest.importorskip("open_rarity")
    collection = open_rarity.Collection(
        tokens=[
            open_rarity.Token.from_erc721(contract_address="0x" + "0" * 40, token_id=token_id, metadata_dict=metadata)
            for token_id, metadata in openrarity_metadata(tokens).items()
        ]
    )
    package = {
        rarity.token.token_identifier.token_id: (rarity.rank, rarity.score)
        for rarity in open_rarity.RarityRanker.rank_collection(collection)
    }
    transcribed = reference_ranks(openrarity_metadata(tokens))
    assert package.keys() == transcribed.keys()
    for token_id, (rank, score) in transcribed.items():
        assert package[token_id][0] == rank
        assert math.isclose(package[token_id][1], score, rel_tol=1e-9)
