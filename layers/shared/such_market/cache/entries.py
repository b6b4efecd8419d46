"""The byte layout of a cached value: a fixed header, then the pre-serialized response body.

    b"200" + b"1795636800123" + body
     status   fresh-until (ms since epoch, 13 digits)

A hit slices the header and returns the body bytes as they are: no JSON parsing, no re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from such_market.cache.tiers import Tier

_STATUS_END = 3
_HEADER_END = 16
HEADER_BYTES = _HEADER_END
"""How many bytes of a stored value are the header (status and fresh-until): ``GETRANGE key 0 15``."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A response as it is cached: HTTP status and JSON body bytes.

    A loader marks a partial answer (one wallet of several failed) ``cacheable=False``: it is served,
    but the cache stores nothing and gives its fill lease back, so the next request tries again. An
    answer known to be incomplete but worth sharing briefly carries a shorter ``tier`` (``Tier.BRIEF``):
    it is stored for the shorter of that and the key's tier.
    """

    status: int
    body: bytes
    cacheable: bool = True
    tier: Tier | None = None


def encode(entry: Entry, fresh_until_ms: int) -> bytes:
    """Prefix ``entry.body`` with its status and the time until which it is fresh."""
    return b"%03d%013d" % (entry.status, fresh_until_ms) + entry.body


def decode_header(header: bytes) -> tuple[int, int] | None:
    """Status and fresh-until (ms since epoch) from a value's first ``HEADER_BYTES`` bytes; ``None``
    when there is no value (an empty read) or the bytes are not a header."""
    if len(header) < _HEADER_END or not header[:_HEADER_END].isdigit():
        return None
    return int(header[:_STATUS_END]), int(header[_STATUS_END:_HEADER_END])


def decode(raw: bytes) -> tuple[Entry, int]:
    """The entry and its fresh-until time (ms since epoch) of a value written by ``encode``."""
    return Entry(int(raw[:_STATUS_END]), raw[_HEADER_END:]), int(raw[_STATUS_END:_HEADER_END])
