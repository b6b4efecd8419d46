"""Send a signed Alchemy NFT-activity webhook (one ERC-721 transfer) to the local API, as Alchemy would.

    python -m local.send_webhook --contract 0x… --token 5 --from 0x… --to 0x… [--unsigned | --bad-signature]

The body is signed with ``ALCHEMY_WEBHOOK_SIGNING_KEY`` (``make dev`` prints the command with its key).
Each call uses a fresh transaction hash, so a repeat is a new transfer; ``--replay FILE`` re-sends a
body saved with ``--save FILE`` to show that a replay changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def transfer_body(*, contract: str, token_id: int, sender: str, receiver: str) -> bytes:
    """An NFT_ACTIVITY payload with one ERC-721 transfer, in Alchemy's shape (hex token id, log)."""
    activity = erc721_activity(
        contract=contract,
        token_id=token_id,
        sender=sender,
        receiver=receiver,
        block=20_000_000 + secrets.randbelow(1_000_000),
        tx_hash="0x" + secrets.token_hex(32),
        block_hash="0x" + secrets.token_hex(32),
    )
    return activity_body([activity])


def erc721_activity(
    *, contract: str, token_id: int, sender: str, receiver: str, block: int, tx_hash: str, block_hash: str
) -> dict[str, Any]:
    """One ERC-721 transfer as an NFT_ACTIVITY webhook lists it (hex block and token id, its log)."""
    return {
        "fromAddress": sender,
        "toAddress": receiver,
        "contractAddress": contract,
        "blockNum": hex(block),
        "hash": tx_hash,
        "erc721TokenId": hex(token_id),
        "category": "erc721",
        "log": {
            "address": contract,
            "blockNumber": hex(block),
            "transactionHash": tx_hash,
            "blockHash": block_hash,
            "logIndex": "0x0",
            "removed": False,
        },
    }


def activity_body(activity: list[dict[str, Any]], *, webhook_id: str = "wh_local") -> bytes:
    """An NFT_ACTIVITY webhook body carrying ``activity`` (a fresh delivery id each time)."""
    payload = {
        "webhookId": webhook_id,
        "id": "whevt_" + secrets.token_hex(8),
        "createdAt": "2026-01-01T00:00:00.000Z",
        "type": "NFT_ACTIVITY",
        "event": {"network": "BASE_MAINNET", "activity": activity},
    }
    return json.dumps(payload).encode()


def signature(body: bytes, key: str) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--key", default=os.environ.get("ALCHEMY_WEBHOOK_SIGNING_KEY", ""))
    parser.add_argument("--contract")
    parser.add_argument("--token", type=int)
    parser.add_argument("--from", dest="sender")
    parser.add_argument("--to", dest="receiver")
    parser.add_argument("--save", type=Path, help="also write the body to this file")
    parser.add_argument("--replay", type=Path, help="send this saved body again instead of a new transfer")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--unsigned", action="store_true")
    mode.add_argument("--bad-signature", action="store_true")
    args = parser.parse_args(argv)
    if args.replay:
        body = args.replay.read_bytes()
    elif None in (args.contract, args.token, args.sender, args.receiver):
        parser.error("--contract, --token, --from and --to are required (or --replay FILE)")
    else:
        body = transfer_body(contract=args.contract, token_id=args.token, sender=args.sender, receiver=args.receiver)
    if args.save:
        args.save.write_bytes(body)
    headers = {"content-type": "application/json"}
    if not args.unsigned:
        if not args.key:
            parser.error("no signing key: pass --key or set ALCHEMY_WEBHOOK_SIGNING_KEY")
        headers["x-alchemy-signature"] = "0" * 64 if args.bad_signature else signature(body, args.key)
    return post_and_print(f"{args.api}/api/webhooks/alchemy", body, headers)


def post_and_print(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to the local API and print the status and the answer; 1 for an error status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the local API
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local API
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
