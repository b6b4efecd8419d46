"""Parsing of every value that comes from outside: addresses, token ids, fids, paging, trait filters.

Two layers: ``normalize_*`` functions raise ``ValueError`` (used by models and upstream parsers), and
``parse_*`` functions turn request input into typed values or a ``BadRequestError`` (400) with the
SPEC error shape. Nothing reaches SQL or a cache key name without passing through here.

No text input may hold a control character (C0, DEL, C1) or a lone surrogate: PostgreSQL text cannot
hold NUL, UTF-8 cannot encode a surrogate, and none belongs in an identifier, a filter or a message.
``reject_control_characters`` is the one check: the formats below exclude them by construction, trait
filters and JSON bodies (every string and key, at any depth: ``parse_json_object``) call it, and so does
every other parser of request text (the webhooks).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal, get_args

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
NftSort = Literal["tokenId", "rarity", "-rarity"]
"""The orders of an NFT page: numeric token id, rarest first, most common first."""
NFT_SORTS: Final[tuple[NftSort, ...]] = get_args(NftSort)

ZERO_ADDRESS: Final = "0x" + "0" * 40
"""The zero address: the ``from`` of a mint and the ``to`` of a burn."""

# The formats below are also what the OpenAPI document declares (such_market.http.schemas), so a
# request its schema allows is one these parsers accept.
ADDRESS_PATTERN: Final = r"0x[0-9a-fA-F]{40}"
TOKEN_ID_PATTERN: Final = r"[0-9]{1,77}|0x[0-9a-fA-F]{1,64}"
"""Token ids every one of which is valid; 78-digit decimals up to 2**256-1 are accepted too (a bound no
pattern states readably)."""
_DIGIT_TRIPLE = r"(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"  # base64 of three ASCII digits
_DIGIT_TAIL = r"(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]|[MN][AQgw]|O[AQ]"  # of the last two, or the last one
CURSOR_PATTERN: Final = (
    rf"dDo[w-z0-5](?:(?:{_DIGIT_TRIPLE}){{0,24}}(?:{_DIGIT_TAIL})?|(?:{_DIGIT_TRIPLE}){{25}}(?:[MN][AQgw]|O[AQ])?)"
)
"""``encode_cursor`` of every token id of up to 77 digits: unpadded base64url of ``t:<digits>`` ("dDo" is
the base64 of ``t:`` and the first digit's high bits); 78-digit ids up to 2**256-1 are accepted too."""

_ADDRESS = re.compile(ADDRESS_PATTERN)
_DECIMAL = re.compile(r"[0-9]{1,78}")  # 2**256-1 has 78 digits; longer input is rejected before int()
_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
_SMALL_INT = re.compile(r"[0-9]{1,19}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{4,108}")  # unpadded base64url of "t:" + at most 78 digits
CONTROL_CHARACTERS: Final = r"\x00-\x1f\x7f-\x9f"
"""C0, DEL and C1, as the inside of a regular-expression class (the OpenAPI document excludes them too)."""
_CONTROL = re.compile(rf"[{CONTROL_CHARACTERS}\ud800-\udfff]")  # and lone surrogates, which UTF-8 cannot encode


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
def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL, C1) or a lone surrogate."""
    return _CONTROL.search(text) is not None


def reject_control_characters(value: object, *, field: str, code: str = "invalid_input") -> None:
    """400 ``code`` naming ``field`` when ``value`` — a string, or JSON (objects' keys and values, arrays,
    at any depth) — holds a control character; other values pass."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_control_characters(item):
                raise BadRequestError(f"invalid {field}: control characters are not allowed", code=code)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


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


def parse_flag(value: str | None, *, field: str, code: str) -> bool:
    """A boolean query parameter: ``true`` or ``false`` (any case); absent is false; else 400 ``code``."""
    if value is None:
        return False
    if value.lower() not in {"true", "false"}:
        raise BadRequestError(f"invalid {field}: expected true or false", code=code)
    return value.lower() == "true"


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


def parse_sort(value: str | None) -> NftSort:
    """An NFT page's ``sort`` (default ``tokenId``)."""
    if value is None:
        return "tokenId"
    for sort in NFT_SORTS:
        if value == sort:
            return sort
    raise BadRequestError(f"invalid sort: expected one of {', '.join(NFT_SORTS)}", code="invalid_sort")


def parse_json_object(
    body: str | bytes | None, *, max_bytes: int, shape: str, fields: Collection[str] | None = None
) -> dict[str, object]:
    """A request body that must be one JSON object of at most ``max_bytes``; 400 ``invalid_body`` naming
    ``shape`` (e.g. ``"{action, alertId?}"``) for an empty, oversized, malformed or non-object body, one
    holding a control character anywhere, or (when ``fields`` are given) a field not among them."""
    if body is None or len(body) == 0:
        raise BadRequestError(f"a JSON body {shape} is required", code="invalid_body")
    if len(body) > max_bytes:
        raise BadRequestError("the request body is too large", code="invalid_body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequestError("the request body is not valid JSON", code="invalid_body") from None
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object", code="invalid_body")
    reject_control_characters(payload, field="body", code="invalid_body")
    unknown = sorted(set(payload) - set(fields)) if fields is not None else []
    if unknown:
        raise BadRequestError(f"unknown field(s): {', '.join(unknown)}", code="invalid_body")
    return payload


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
        if not trait_type or len(trait_type) > MAX_TRAIT_TEXT or not values or has_control_characters(name + raw):
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
        if not _BASE64URL.fullmatch(value):
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        decoded = raw.decode()
        # Only the canonical encoding (what encode_cursor writes): no padding, no stray low bits.
        if not decoded.startswith("t:") or base64.urlsafe_b64encode(raw).decode().rstrip("=") != value:
            raise ValueError
        return token_id_value(decoded[2:], allow_hex=False)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequestError("invalid cursor: use the nextCursor of a previous page", code="invalid_cursor") from None


def source_ip(raw_event: Mapping[str, Any]) -> str | None:
    """The caller's address from an HTTP API v2 event, normalized; ``None`` when absent or malformed."""
    try:
        return str(ipaddress.ip_address(raw_event["requestContext"]["http"]["sourceIp"]))
    except (KeyError, TypeError, ValueError):
        return None
