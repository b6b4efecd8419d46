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

Cost: O(trait rows + N log N). Each token's sum is the collection's total absence information plus, per
trait it holds, (its information - its type's absence information): the per-value terms are computed
once, so a type that most tokens lack (one per split value) costs nothing for the tokens lacking it.
Two tokens with the same traits get bitwise the same score (their terms are added in the same order).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TRAIT_COUNT = "meta_trait:trait_count"
"""The meta trait OpenRarity adds to every token: how many traits it has."""
_NO_VALUE = frozenset({"none", ""})


@dataclass(frozen=True, slots=True)
class TokenRarity:
    """One token's place: ``rank`` (1 = rarest, shared by equal scores), ``score``, and ``position``, its
    0-based index in (rank, token id) order."""

    token_id: int
    rank: int
    score: float
    position: int


def normalize(text: str) -> str:
    """OpenRarity's normalization of trait names and values."""
    return text.lower().strip()


def token_traits(pairs_by_token: Mapping[int, Iterable[tuple[str, str]]]) -> dict[int, dict[str, str]]:
    """Each token's traits as OpenRarity scores them: normalized, several values of one type split into
    ``<type>:<value>`` traits (see the module docstring), and the trait count meta trait added."""
    normalized: dict[int, dict[str, set[str]]] = {}
    split: set[str] = set()
    for token_id, pairs in pairs_by_token.items():
        by_type: dict[str, set[str]] = defaultdict(set)
        for trait_type, value in pairs:
            by_type[normalize(trait_type)].add(normalize(value))
        split.update(trait_type for trait_type, values in by_type.items() if len(values) > 1)
        normalized[token_id] = by_type
    traits: dict[int, dict[str, str]] = {}
    for token_id, by_type in normalized.items():
        attributes: dict[str, str] = {}
        for trait_type, values in by_type.items():
            if trait_type in split:
                attributes.update((f"{trait_type}:{value}", value) for value in values)
            else:
                (attributes[trait_type],) = values
        # As open-rarity counts: its own trait_count attribute, if a collection has one, is not a trait.
        count = sum(value not in _NO_VALUE for value in attributes.values()) - (TRAIT_COUNT in attributes)
        attributes[TRAIT_COUNT] = str(count)
        traits[token_id] = attributes
    return traits


def rank_tokens(pairs_by_token: Mapping[int, Iterable[tuple[str, str]]]) -> list[TokenRarity]:
    """Score and rank every token of ``pairs_by_token`` (token id → its (trait type, value) pairs; a token
    with no traits maps to an empty list); returns them in rarity order (rank, then token id)."""
    traits = token_traits(pairs_by_token)
    supply = len(traits)
    if supply == 0:
        return []
    counts: Counter[tuple[str, str]] = Counter()
    for attributes in traits.values():
        counts.update(attributes.items())
    holders: Counter[str] = Counter()
    for (name, _), count in counts.items():
        holders[name] += count
    absent = {name: supply - held for name, held in holders.items()}
    probabilities = [count / supply for count in counts.values()]
    probabilities += [missing / supply for missing in absent.values() if missing > 0]
    entropy = -math.fsum(p * math.log2(p) for p in probabilities) or 1.0
    absence_information = {name: -math.log2(missing / supply) if missing else 0.0 for name, missing in absent.items()}
    base = math.fsum(absence_information.values())
    extra = {pair: -math.log2(count / supply) - absence_information[pair[0]] for pair, count in counts.items()}

    scored: list[tuple[int, float, int]] = []  # (unique attributes, score, token id)
    for token_id, attributes in traits.items():
        held = sorted(attributes.items())
        information = base + math.fsum(extra[pair] for pair in held)
        unique = sum(counts[pair] == 1 for pair in held)
        scored.append((unique, information / entropy, token_id))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))

    ranked: list[tuple[int, float, int]] = []  # (rank, score, token id)
    for index, (_, score, token_id) in enumerate(scored):
        rank = index + 1
        if ranked and math.isclose(score, ranked[-1][1]):
            rank = ranked[-1][0]
        ranked.append((rank, score, token_id))
    ranked.sort(key=lambda item: (item[0], item[2]))
    return [TokenRarity(token_id, rank, score, position) for position, (rank, score, token_id) in enumerate(ranked)]


__all__ = ["TRAIT_COUNT", "TokenRarity", "normalize", "rank_tokens", "token_traits"]
