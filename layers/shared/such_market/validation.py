"""Parsing of every value that comes from outside: addresses, token ids, fids, paging, trait filters.

Two layers: ``normalize_*`` functions raise ``ValueError`` (used by models and upstream parsers), and
``parse_*`` functions turn request input into typed values or a ``BadRequestError`` (400) with the
SPEC error shape. Nothing reaches SQL or a cache key name without passing through here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Final

import orjson

from such_market.errors import BadRequestError

MAX_UINT256: Final = 2**256 - 1
MAX_FID: Final = 2**63 - 1
MAX_PAGE: Final = 1_000_000
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
MAX_TRAIT_TYPES: Final = 10
MAX_TRAIT_VALUES: Final = 25
MAX_TRAIT_TEXT: Final = 200
TRAIT_PREFIX: Final = "trait."

ZERO_ADDRESS: Final = "0x" + "0" * 40
"""The zero address: the ``from`` of a mint and the ``to`` of a burn."""

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DECIMAL = re.compile(r"[0-9]{1,78}")  # 2**256-1 has 78 digits; longer input is rejected before int()
_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
_SMALL_INT = re.compile(r"[0-9]{1,19}")


# -- normalizers (ValueError) ----------------------------------------------------------------------
def normalize_address(value: object) -> str:
    """Return ``value`` as a lower-case ``0x`` address, or raise ``ValueError``."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ValueError("must be 0x followed by 40 hexadecimal digits")
    return value.lower()


def normalize_uint256(value: object) -> str:
    """Return ``value`` (a decimal string or an int) as a canonical decimal string in 0 … 2**256-1."""
    return str(token_id_value(value, allow_hex=False))


def token_id_value(value: object, *, allow_hex: bool = True) -> int:
    """A token id as an int: an int, a decimal string, or (with ``allow_hex``) a ``0x`` hex string."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    elif allow_hex and isinstance(value, str) and _HEX.fullmatch(value):
        number = int(value, 16)
    else:
        raise ValueError("must be a non-negative decimal integer" + (" or 0x hex" if allow_hex else ""))
    if not 0 <= number <= MAX_UINT256:
        raise ValueError("must be between 0 and 2**256-1")
    return number


# -- request parsers (BadRequestError) -------------------------------------------------------------
def parse_address(value: str | None, *, field: str = "contractAddress") -> str:
    try:
        return normalize_address(value)
    except ValueError:
        raise BadRequestError(
            f"invalid {field}: expected 0x followed by 40 hexadecimal digits", code="invalid_address"
        ) from None


def parse_token_id(value: str | None) -> int:
    try:
        return token_id_value(value)
    except ValueError:
        raise BadRequestError(
            "invalid tokenId: expected a decimal or 0x-hex integer between 0 and 2**256-1", code="invalid_token_id"
        ) from None


def parse_fid(value: str | None) -> int:
    if value is None or not _SMALL_INT.fullmatch(value) or not 0 < int(value) <= MAX_FID:
        raise BadRequestError("invalid fid: expected a positive integer", code="invalid_fid")
    return int(value)


def parse_page(value: str | None) -> int:
    if value is None:
        return 0
    if not _SMALL_INT.fullmatch(value) or int(value) > MAX_PAGE:
        raise BadRequestError(f"invalid page: expected an integer from 0 to {MAX_PAGE}", code="invalid_page")
    return int(value)


def parse_page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not _SMALL_INT.fullmatch(value) or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise BadRequestError(
            f"invalid pageSize: expected an integer from 1 to {MAX_PAGE_SIZE}", code="invalid_page_size"
        )
    return int(value)


def parse_trait_filters(query: Mapping[str, str] | None) -> dict[str, tuple[str, ...]]:
    """``trait.<type>=<value>`` parameters → {type: values}: AND across types, OR within one.

    HTTP API v2 joins a repeated parameter's values with commas, so ``trait.Hat=Cap&trait.Hat=Crown``
    and ``trait.Hat=Cap,Crown`` mean the same. Types and values are sorted so that equal filters get
    equal cache keys.
    """
    filters: dict[str, tuple[str, ...]] = {}
    for name, raw in (query or {}).items():
        if not name.startswith(TRAIT_PREFIX):
            continue
        trait_type = name[len(TRAIT_PREFIX) :]
        values = sorted({value.strip() for value in raw.split(",") if value.strip()})
        if not trait_type or len(trait_type) > MAX_TRAIT_TEXT or not values:
            raise BadRequestError(f"invalid filter {name!r}: expected trait.<type>=<value>", code="invalid_filter")
        if len(values) > MAX_TRAIT_VALUES or any(len(value) > MAX_TRAIT_TEXT for value in values):
            raise BadRequestError(
                f"invalid filter {name!r}: at most {MAX_TRAIT_VALUES} values of {MAX_TRAIT_TEXT} characters",
                code="invalid_filter",
            )
        filters[trait_type] = tuple(values)
    if len(filters) > MAX_TRAIT_TYPES:
        raise BadRequestError(f"too many trait filters: at most {MAX_TRAIT_TYPES} types", code="invalid_filter")
    return dict(sorted(filters.items()))


def filter_hash(filters: Mapping[str, tuple[str, ...]]) -> str | None:
    """A short stable digest of normalized filters for cache keys (None without filters)."""
    if not filters:
        return None
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def encode_cursor(token_id: int) -> str:
    """An opaque cursor that resumes after ``token_id``."""
    return base64.urlsafe_b64encode(f"t:{token_id}".encode()).decode().rstrip("=")


def parse_cursor(value: str | None) -> int | None:
    """The token id a cursor resumes after (None when absent)."""
    if value is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        if not decoded.startswith("t:"):
            raise ValueError
        return token_id_value(decoded[2:], allow_hex=False)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequestError("invalid cursor: use the nextCursor of a previous page", code="invalid_cursor") from None
