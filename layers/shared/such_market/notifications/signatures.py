"""JSON Farcaster Signatures: the envelope of every mini-app event (``POST /api/webhook``).

A signed event is ``{"header", "payload", "signature"}``, each base64url. The header decodes to
``{"fid": <int>, "type": "app_key", "key": "0x<64 hex>"}``: the user and the Ed25519 public key (the
user's app key) that signed; the signature (64 bytes) is Ed25519 over the ASCII text
``<header>.<payload>`` exactly as sent. This is what ``@farcaster/miniapp-node``'s
``verifyJsonFarcasterSignature`` checks; Ed25519 itself is the ``cryptography`` library's.

``parse_envelope`` reads the envelope: a body that is not ``{header, payload, signature}`` of base64url
text with a 64-byte signature is a ``MalformedSignatureError`` (the caller answers 400; the API document
states exactly this shape). What the signed parts say is unauthenticated until verified, so a header
that does not decode to an app-key header is an ``InvalidSignatureError`` (401), as is a signature
``verify`` rejects. The payload is only decoded after that, by the caller. ``sign`` builds an envelope:
the local event sender and the tests use it, so both sides of the format live here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from such_market.errors import SuchMarketError
from such_market.validation import MAX_FID

SIGNATURE_BYTES: Final = 64
MAX_ENVELOPE_PART_CHARS: Final = 16_384
BASE64URL_PATTERN: Final = r"^[A-Za-z0-9_-]+={0,2}$"
SIGNATURE_PATTERN: Final = r"^[A-Za-z0-9_-]{86}(==)?$"
"""64 bytes in base64url: 86 characters, padded or not."""
_KEY = re.compile(r"0x[0-9a-fA-F]{64}")
_BASE64URL = re.compile(BASE64URL_PATTERN)
_SIGNATURE = re.compile(SIGNATURE_PATTERN)


class MalformedSignatureError(SuchMarketError):
    """The body is not a JSON Farcaster Signature (or its header is not an app-key header)."""


class InvalidSignatureError(SuchMarketError):
    """The signature does not verify under the header's key."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed signed event: the header's fid and app key, the signed text and the raw parts."""

    fid: int
    key: str  # 0x + 64 lower-case hex digits
    header: str
    payload: str
    signature: bytes

    @property
    def signed_text(self) -> bytes:
        """What the signature covers: ``<header>.<payload>`` as sent."""
        return f"{self.header}.{self.payload}".encode()

    @property
    def digest(self) -> bytes:
        """SHA-256 of the whole envelope: the identity of this exact event (replays have the same one)."""
        return hashlib.sha256(self.signed_text + b"." + self.signature).digest()

    def payload_bytes(self) -> bytes:
        """The payload, decoded (call only after ``verify``); ``ValueError`` when it is not base64url."""
        return _b64url_decode(self.payload)


def _b64url_decode(text: str) -> bytes:
    """The bytes of base64url ``text`` (padded or not); ``ValueError`` when it is not base64url."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_envelope(body: bytes) -> Envelope:
    """The envelope in ``body`` (see the module doc for which failure is which)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedSignatureError("the body is not JSON") from None
    if not isinstance(raw, dict):
        raise MalformedSignatureError("the body is not a JSON object")
    parts = [raw.get(name) for name in ("header", "payload", "signature")]
    if not all(isinstance(part, str) and 0 < len(part) <= MAX_ENVELOPE_PART_CHARS for part in parts):
        raise MalformedSignatureError("header, payload and signature must be non-empty strings")
    header_text, payload_text, signature_text = (str(part) for part in parts)
    if not (_BASE64URL.fullmatch(header_text) and _BASE64URL.fullmatch(payload_text)):
        raise MalformedSignatureError("header and payload must be base64url")
    if not _SIGNATURE.fullmatch(signature_text):
        raise MalformedSignatureError("the signature must be 64 bytes in base64url")
    signature = base64.urlsafe_b64decode(signature_text.rstrip("=") + "==")
    try:
        header = orjson.loads(_b64url_decode(header_text))
        fid, key = _header_fields(header)
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidSignatureError("the header is not an app-key header") from None
    return Envelope(fid=fid, key=key.lower(), header=header_text, payload=payload_text, signature=signature)


def _header_fields(header: object) -> tuple[int, str]:
    if not isinstance(header, Mapping):
        raise ValueError("the header is not a JSON object")
    fid, kind, key = header.get("fid"), header.get("type"), header.get("key")
    if isinstance(fid, bool) or not isinstance(fid, int) or not 0 < fid <= MAX_FID:
        raise ValueError("the header's fid is not a fid")
    if kind != "app_key":
        raise ValueError("the header's type is not app_key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("the header's key is not 0x followed by 64 hexadecimal digits")
    return fid, key


def verify(envelope: Envelope) -> None:
    """Raise ``InvalidSignatureError`` unless the signature is the header key's over ``header.payload``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(envelope.key[2:]))
    try:
        public_key.verify(envelope.signature, envelope.signed_text)
    except InvalidSignature:
        raise InvalidSignatureError("the signature does not verify") from None


def public_key_hex(private_key: bytes) -> str:
    """The app key (0x + hex of the Ed25519 public key) of a 32-byte private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(private_key).public_key()
    return "0x" + public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(*, fid: int, private_key: bytes, payload: Mapping[str, Any]) -> dict[str, str]:
    """A JSON Farcaster Signature of ``payload`` by ``fid`` with the app key ``private_key`` (32 bytes),
    as ``createJsonFarcasterSignature`` builds it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    header = _b64url_encode(orjson.dumps({"fid": fid, "type": "app_key", "key": public_key_hex(private_key)}))
    body = _b64url_encode(orjson.dumps(payload))
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(f"{header}.{body}".encode())
    return {"header": header, "payload": body, "signature": _b64url_encode(signature)}
