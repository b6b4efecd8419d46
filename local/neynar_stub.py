"""A Neynar API v2 stub: deterministic Farcaster users over HTTP, for tests, benchmarks and ``make dev``.

``NeynarStub`` serves ``GET /v2/farcaster/user/bulk/?fids=1,2,3`` (trailing slash optional) with
Neynar's response shape ``{"users": [...]}``: snake_case fields, ``verified_addresses.eth_addresses``,
follower counts. A fid that does not exist is simply absent from ``users``, as on Neynar. Like Neynar,
it accepts one key in the ``x-api-key`` header, its ``api_key`` (``DEFAULT_API_KEY`` unless given, and
unlike the Alchemy stub's): without the header, or with any other key, the answer is 401 (a wrong key is
echoed in the message, to prove clients redact it). More than 100 fids, or a fid that is not a positive
integer, is a 400. Errors are ``{"message": …, "code": …}`` like Neynar's; 5xx are plain text.

The users are generated from ``SEED`` by hashing, so every run, thread and process sees the same ones.
Fids ``1 … USER_COUNT`` exist, and their verified addresses are wallets of the Alchemy stub
(``local.alchemy_stub.wallet_address``), so they hold NFTs of the stub collections:

- fid ``n`` verifies ``wallet_address(n)`` (it holds tokens of the ERC-721 and the large collection);
- every fid divisible by ``SECOND_WALLET_EVERY`` also verifies ``wallet_address(SECOND_WALLET_BASE + n)``
  (a wallet holding only tokens of the large collection);
- ``WALLETLESS_FID`` verifies no address;
- each custody address is generated apart from the stub wallets and holds nothing.

It also serves Neynar's hub HTTP API call ``GET /v1/onChainSignersByFid?fid=N``, which
``@farcaster/miniapp-node``'s ``verifyAppKeyWithNeynar`` makes (and ``NeynarClient.app_key_fid``): each
existing fid has one active app key, the Ed25519 key ``app_private_key(fid)`` registered by the client
app ``CLIENT_APP_FID`` (the ``requestFid`` of its ABI-encoded ``SignedKeyRequest`` metadata), so
``local.send_miniapp_event`` and the tests sign mini-app events that verify; an unknown fid has none.
Point ``NEYNAR_HUB_URL`` at the stub too.

Ground truth for tests: ``user_exists``, ``user_wallets``, ``custody_address``, ``stub_user``,
``app_private_key``, ``app_key``.

Fault injection, changeable while running: ``latency_ms`` (added to every request), ``rate_limit_every``
(every Nth request answers 429 with ``Retry-After: retry_after_seconds``), ``server_error_every`` (every
Nth request answers 503). ``request_count(endpoint, fid=…)`` counts every request received, injected
failures included, per endpoint and per fid asked for. Run it alone with
``python -m local.neynar_stub [--port N] [--api-key KEY]``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from local.alchemy_stub import ERC721_WALLET_COUNT, wallet_address
from local.stub_server import Answer, StubServer, stub_main

SEED: Final = "such-market-neynar-stub-v1"
USER_COUNT: Final = 50
WALLETLESS_FID: Final = USER_COUNT
SECOND_WALLET_EVERY: Final = 5
SECOND_WALLET_BASE: Final = ERC721_WALLET_COUNT  # wallets from here on hold no ERC-721 token of the stub
DEFAULT_API_KEY: Final = "local-neynar-key"
MAX_FIDS: Final = 100
BULK_ENDPOINT: Final = "user/bulk"
SIGNERS_ENDPOINT: Final = "onChainSignersByFid"
CLIENT_APP_FID: Final = 9152
"""The fid of the Farcaster client app that registered every stub app key."""
_PATHS: Final = {
    "/v2/farcaster/user/bulk/": BULK_ENDPOINT,
    "/v2/farcaster/user/bulk": BULK_ENDPOINT,
    "/v1/onChainSignersByFid": SIGNERS_ENDPOINT,
}


# --------------------------------------------------------------------------------------------------
# Deterministic data


def _unit(*parts: object) -> float:
    """A number in [0, 1) determined by ``parts`` (and ``SEED``)."""
    text = "|".join(str(part) for part in (SEED, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) / 2**64


def user_exists(fid: int) -> bool:
    """Whether the stub knows ``fid``."""
    return 1 <= fid <= USER_COUNT


def user_wallets(fid: int) -> list[str]:
    """The verified addresses of ``fid`` (lower-case), in the order the stub lists them."""
    if not user_exists(fid) or fid == WALLETLESS_FID:
        return []
    wallets = [wallet_address(fid)]
    if fid % SECOND_WALLET_EVERY == 0:
        wallets.append(wallet_address(SECOND_WALLET_BASE + fid))
    return wallets


def custody_address(fid: int) -> str:
    """The custody address of ``fid`` (lower-case): apart from every stub wallet, it holds nothing."""
    return "0x" + hashlib.blake2b(f"{SEED}|custody|{fid}".encode(), digest_size=20).hexdigest()


def stub_user(fid: int) -> dict[str, Any] | None:
    """The user object Neynar's ``user/bulk`` lists for ``fid`` (``None`` for an unknown fid)."""
    if not user_exists(fid):
        return None
    wallets = user_wallets(fid)
    return {
        "object": "user",
        "fid": fid,
        "username": f"such{fid}",
        "display_name": f"Such User {fid}",
        "pfp_url": f"https://pfp.such-market.invalid/{fid}.png",
        # Neynar answers lower-case, but clients must not rely on it: this one is upper-cased.
        "custody_address": "0x" + custody_address(fid)[2:].upper(),
        "profile": {"bio": {"text": f"stub user {fid}"}},
        "follower_count": int(_unit("followers", fid) * 10_000),
        "following_count": int(_unit("following", fid) * 1_000),
        "verifications": wallets,
        "verified_addresses": {
            "eth_addresses": wallets,
            "sol_addresses": [],
            "primary": {"eth_address": wallets[0] if wallets else None, "sol_address": None},
        },
        "power_badge": fid % 7 == 0,
    }


def app_private_key(fid: int) -> bytes:
    """The 32-byte Ed25519 private key of ``fid``'s app key (the stub lists its public key as active)."""
    return hashlib.blake2b(f"{SEED}|app-key|{fid}".encode(), digest_size=32).digest()


def app_key(fid: int) -> str:
    """``fid``'s app key as the hub lists it: 0x + the hex of the Ed25519 public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(app_private_key(fid)).public_key()
    return "0x" + public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signed_key_request_metadata(request_fid: int) -> str:
    """Base64 of the ABI encoding of ``SignedKeyRequest(requestFid, requestSigner, signature, deadline)``:
    a dynamic tuple (offset word first), the signature a 65-byte ``bytes`` value."""
    signature = hashlib.blake2b(f"{SEED}|skr|{request_fid}".encode(), digest_size=64).digest() + b"\x1b"
    words = [
        (32).to_bytes(32),  # offset of the tuple
        request_fid.to_bytes(32),
        bytes(12) + hashlib.blake2b(f"{SEED}|signer|{request_fid}".encode(), digest_size=20).digest(),
        (4 * 32).to_bytes(32),  # offset of ``signature`` within the tuple
        (2**32).to_bytes(32),  # deadline
        len(signature).to_bytes(32),
        signature + bytes(-len(signature) % 32),
    ]
    return base64.b64encode(b"".join(words)).decode()


# --------------------------------------------------------------------------------------------------
# Request handling


class _BadRequestError(Exception):
    """A request the real API would answer with 400."""


type _Answer = tuple[int, bytes, dict[str, str]]


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> _Answer:
    return status, orjson.dumps(body), {"Content-Type": "application/json", **(headers or {})}


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> _Answer:
    return _json(status, {"message": message, "code": code}, headers)


def parse_fids(params: Mapping[str, list[str]]) -> list[int]:
    """The ``fids`` parameter (comma-separated, repeated parameters joined) as positive ints."""
    texts = [part.strip() for value in params.get("fids", []) for part in value.split(",") if part.strip()]
    if not texts:
        raise _BadRequestError("fids is required")
    if len(texts) > MAX_FIDS:
        raise _BadRequestError(f"fids may list at most {MAX_FIDS} fids")
    if not all(text.isascii() and text.isdigit() and int(text) > 0 for text in texts):
        raise _BadRequestError("fids must be positive integers")
    return [int(text) for text in texts]


def parse_fid(params: Mapping[str, list[str]]) -> int:
    """The ``fid`` parameter of a hub call, a positive int."""
    values = params.get("fid", [])
    if len(values) != 1 or not values[0].isascii() or not values[0].isdigit() or int(values[0]) <= 0:
        raise _BadRequestError("fid must be one positive integer")
    return int(values[0])


def on_chain_signers(fid: int) -> _Answer:
    """The hub's ``onChainSignersByFid``: the fid's active signer, registered by ``CLIENT_APP_FID``."""
    if not user_exists(fid):
        return _json(200, {"events": []})
    event = {
        "type": "EVENT_TYPE_SIGNER",
        "chainId": 10,
        "blockNumber": 100_000_000 + fid,
        "blockHash": "0x" + hashlib.blake2b(f"{SEED}|block|{fid}".encode(), digest_size=32).hexdigest(),
        "blockTimestamp": 1_700_000_000,
        "transactionHash": "0x" + hashlib.blake2b(f"{SEED}|tx|{fid}".encode(), digest_size=32).hexdigest(),
        "logIndex": 0,
        "fid": fid,
        "signerEventBody": {
            "key": app_key(fid),
            "keyType": 1,
            "eventType": "SIGNER_EVENT_TYPE_ADD",
            "metadata": signed_key_request_metadata(CLIENT_APP_FID),
            "metadataType": 1,
        },
        "txIndex": 0,
    }
    return _json(200, {"events": [event]})


def bulk_users(fids: list[int]) -> _Answer:
    """``user/bulk``: the known fids' users, in the order asked; unknown fids are left out."""
    users = [user for fid in dict.fromkeys(fids) if (user := stub_user(fid)) is not None]
    return _json(200, {"users": users})


# --------------------------------------------------------------------------------------------------
# Server


class NeynarStub(StubServer):
    """The stub server: ``with NeynarStub() as stub: NeynarClient(api_key=stub.api_key, base_url=stub.base_url)``."""

    name = "neynar-stub"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        latency_ms: float = 0,
        rate_limit_every: int = 0,
        retry_after_seconds: int = 1,
        server_error_every: int = 0,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            api_key=api_key,
            latency_ms=latency_ms,
            rate_limit_every=rate_limit_every,
            retry_after_seconds=retry_after_seconds,
            server_error_every=server_error_every,
        )
        self._lock = threading.Lock()
        self._sequence = 0
        self._requests: Counter[str] = Counter()
        self._fids: Counter[tuple[str, int]] = Counter()

    def answer(self, path: str, headers: Mapping[str, str]) -> Answer:
        return self.handle(path, api_key=headers.get("x-api-key"))

    # -- counters ----------------------------------------------------------------------------------

    def request_count(self, endpoint: str | None = None, *, fid: int | None = None) -> int:
        """Requests received (injected failures included), for one endpoint and/or asking for one fid."""
        with self._lock:
            if fid is None:
                return sum(count for name, count in self._requests.items() if endpoint in {None, name})
            return sum(
                count for (name, asked), count in self._fids.items() if asked == fid and endpoint in {None, name}
            )

    def reset_counters(self) -> None:
        """Forget every count (and restart the sequence used by the failure injection)."""
        with self._lock:
            self._requests.clear()
            self._fids.clear()
            self._sequence = 0

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, target: str, *, api_key: str | None) -> _Answer:
        """Answer one request target (path and query) as the Neynar API v2 would."""
        parts = urlsplit(target)
        endpoint = _PATHS.get(parts.path)
        if endpoint is None:
            return _error(404, f"Cannot GET {parts.path}", "NotFound")
        params = parse_qs(parts.query, keep_blank_values=True)
        try:
            fids: list[int] | str = [parse_fid(params)] if endpoint == SIGNERS_ENDPOINT else parse_fids(params)
        except _BadRequestError as error:
            fids = str(error)
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            self._requests[endpoint] += 1
            for fid in fids if isinstance(fids, list) else ():
                self._fids[endpoint, fid] += 1
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        refused = self._refusal(sequence, api_key)
        if refused is not None:
            return refused
        if not isinstance(fids, list):
            return _error(400, fids, "InvalidField")
        return on_chain_signers(fids[0]) if endpoint == SIGNERS_ENDPOINT else bulk_users(fids)

    def _refusal(self, sequence: int, api_key: str | None) -> _Answer | None:
        """An injected failure for request number ``sequence``, or a 401 for a missing or wrong key."""
        if self.server_error_every and sequence % self.server_error_every == 0:
            return 503, b"Service Unavailable", {"Content-Type": "text/plain"}
        if self.rate_limit_every and sequence % self.rate_limit_every == 0:
            headers = {"Retry-After": str(self.retry_after_seconds)}
            return _error(429, "Rate limit exceeded", "RateLimitExceeded", headers)
        if not api_key:
            return _error(401, "An x-api-key header is required", "Unauthorized")
        if not self.accepts(api_key):
            return _error(401, f"Invalid API key {api_key}", "Unauthorized")
        return None


def main() -> None:
    """Run the stub in the foreground until Ctrl-C."""
    stub_main(
        NeynarStub,
        default_key=DEFAULT_API_KEY,
        upstream="NEYNAR",
        contents=f"users: fids 1 … {USER_COUNT} (fid {WALLETLESS_FID} verifies no wallet), each with an app key"
        " (set NEYNAR_HUB_URL to the same address)",
    )


if __name__ == "__main__":
    main()
