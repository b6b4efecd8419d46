"""OpenRarity scores and ranks of a collection's tokens, computed from their traits (pure; no I/O).

What the reference implementation (PyPI ``open-rarity`` 0.7, ``RarityRanker.rank_collection``) computes
for the same tokens, given each token's attributes as (trait type, value) text pairs, as Alchemy returns
them and ``nft_traits`` stores them:

- names and values are lower-cased and stripped; every token gets the meta trait
  ``meta_trait:trait_count``, the number of its traits whose value is neither ``"none"`` nor empty;
- a token's information content is the sum, over every trait type of the collection, of
  ``-log2(count / N)`` for the value it holds, or of the type's absence share ``-log2(absent / N)`` when
  it holds none; the score is that divided by the collection's entropy (1 when the entropy is 0);
- tokens are ordered by (attributes held by exactly one token, score), descending, and a score within
  ``math.isclose`` (relative 1e-9) of the previous token's shares its rank: 1, 2, 2, 2, 5.

One definition of ours (open-rarity holds one value per trait type, and its converter keeps the last
of several): when some token holds several distinct values of one type (CryptoPunks' Accessory), each
value ``v`` of that type becomes its own trait ``<type>:<v>`` with value ``v``, present or absent on
every token, scored ``-log2(count / N)`` where present and ``-log2((N - count) / N)`` where absent, and
counting toward the trait count. Values are text: a numeric attribute is scored as the string Alchemy
sent (open-rarity itself refuses numeric traits).

Cost: O(trait rows + N log N), working from each trait value's holders (as ``nft_traits`` groups them)
rather than token by token. Each token's sum is the collection's total absence information plus, per
trait it holds, (its information - its type's absence information): the per-value terms are computed
once, so a type that most tokens lack (one per split value) costs nothing for the tokens lacking it.
Two tokens with the same traits get bitwise the same score (their terms are added in the same order).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

TRAIT_COUNT = "meta_trait:trait_count"
"""The meta trait OpenRarity adds to every token: how many traits it has."""
_NO_VALUE = frozenset({"none", ""})


class TokenRarity(NamedTuple):
    """One token's place: ``rank`` (1 = rarest, shared by equal scores), ``score``, and ``position``, its
    0-based index in (rank, token id) order."""

    token_id: int
    rank: int
    score: float
    position: int


def normalize(text: str) -> str:
    """OpenRarity's normalization of trait names and values."""
    return text.lower().strip()


def rank_tokens(pairs_by_token: Mapping[int, Iterable[tuple[str, str]]]) -> list[TokenRarity]:
    """Score and rank every token of ``pairs_by_token`` (token id → its (trait type, value) pairs; a token
    with no traits maps to an empty list); returns them in rarity order (rank, then token id)."""
    token_ids = list(pairs_by_token)
    index_of = {token_id: index for index, token_id in enumerate(token_ids)}
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    for token_id, pairs in pairs_by_token.items():
        for pair in pairs:
            holders[pair].add(index_of[token_id])
    return rank_holders(token_ids, holders)


def trait_holders(
    supply: int, holders: Mapping[tuple[str, str], Collection[int]]
) -> dict[tuple[str, str], Collection[int]]:
    """The traits OpenRarity scores and who holds each (token indexes), from the raw (type, value) pairs'
    holders: names and values normalized, a type some token holds several values of split into
    ``<type>:<value>`` traits, and the trait count meta trait added (see the module docstring)."""
    merged: dict[tuple[str, str], Collection[int]] = {}
    for (trait_type, value), indexes in holders.items():
        pair = normalize(trait_type), normalize(value)
        known = merged.get(pair)
        # Raw pairs that differ only in case or spaces are one trait, held once per token.
        merged[pair] = indexes if known is None else set(known).union(indexes)
    by_type: dict[str, list[tuple[str, Collection[int]]]] = defaultdict(list)
    for (trait_type, value), indexes in merged.items():
        by_type[trait_type].append((value, indexes))
    traits: dict[tuple[str, str], Collection[int]] = {}
    for trait_type, values in by_type.items():
        lists = [indexes for _, indexes in values]
        split = len(lists) > 1 and sum(map(len, lists)) > len(set().union(*lists))
        for value, indexes in values:
            traits[f"{trait_type}:{value}" if split else trait_type, value] = indexes
    # As open-rarity counts: traits whose value is neither "none" nor empty; its own trait_count
    # attribute, if a collection has one, is not a trait (it is replaced below).
    counts = Counter[int]()
    for (name, value), indexes in traits.items():
        if value not in _NO_VALUE:
            counts.update(indexes)
        if name == TRAIT_COUNT:
            counts.subtract(indexes)
    traits = {pair: indexes for pair, indexes in traits.items() if pair[0] != TRAIT_COUNT}
    by_count: dict[int, list[int]] = defaultdict(list)
    for index in range(supply):
        by_count[counts[index]].append(index)
    for count, indexes in by_count.items():
        traits[TRAIT_COUNT, str(count)] = indexes
    return traits


def rank_holders(token_ids: Sequence[int], holders: Mapping[tuple[str, str], Collection[int]]) -> list[TokenRarity]:
    """``rank_tokens`` for traits given by holder: ``holders`` maps each raw (trait type, value) pair to the
    indexes (into ``token_ids``) of the tokens holding it."""
    supply = len(token_ids)
    if supply == 0:
        return []
    traits = trait_holders(supply, holders)
    held_by_name: Counter[str] = Counter()
    for (name, _), indexes in traits.items():
        held_by_name[name] += len(indexes)
    absent = {name: supply - held for name, held in held_by_name.items()}
    probabilities = [len(indexes) / supply for indexes in traits.values()]
    probabilities += [missing / supply for missing in absent.values() if missing > 0]
    entropy = -math.fsum(p * math.log2(p) for p in probabilities) or 1.0
    absence_information = {name: -math.log2(missing / supply) if missing else 0.0 for name, missing in absent.items()}
    information = [math.fsum(absence_information.values())] * supply
    unique = [0] * supply
    # Traits in one fixed order: tokens holding the same traits add the same terms in the same order.
    for (name, _), indexes in sorted(traits.items()):
        extra = -math.log2(len(indexes) / supply) - absence_information[name]
        for index in indexes:
            information[index] += extra
        if len(indexes) == 1:
            (only,) = indexes
            unique[only] += 1
    # Rarest first: more unique attributes, then a higher score (the same factor, entropy, divides all).
    order = sorted(zip([-count for count in unique], [-value for value in information], token_ids, strict=True))
    ranked: list[tuple[int, int, float]] = []  # (rank, token id, score)
    previous_rank, previous_score = 0, math.nan
    for place, (_, negative, token_id) in enumerate(order):
        score = -negative / entropy
        rank = previous_rank if math.isclose(score, previous_score) else place + 1
        ranked.append((rank, token_id, score))
        previous_rank, previous_score = rank, score
    ranked.sort()  # (rank, then token id): nearly sorted already
    return [TokenRarity(token_id, rank, score, position) for position, (rank, token_id, score) in enumerate(ranked)]


__all__ = ["TRAIT_COUNT", "TokenRarity", "normalize", "rank_holders", "rank_tokens", "trait_holders"]
