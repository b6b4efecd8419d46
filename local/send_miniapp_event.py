"""Send a signed Farcaster mini-app event to the local API, as a Farcaster client would.

    python -m local.send_miniapp_event --fid 1 --event notifications_enabled --url <notification URL> [--token T]
    python -m local.send_miniapp_event --fid 1 --event notifications_disabled
    python -m local.send_miniapp_event --fid 1 --event miniapp_added --url … [--bad-signature | --wrong-key]

The event is a JSON Farcaster Signature signed with the fid's app key of the local Neynar stub
(``local.neynar_stub.app_private_key``), which the stub lists as an active key of the fid, so the
webhook accepts it; ``--wrong-key`` signs with another fid's key (401 ``invalid_app_key``),
``--bad-signature`` spoils the signature (401 ``invalid_signature``). ``make dev`` prints the
command with its notification-client stub's URL. ``--save FILE`` keeps the body; ``--replay FILE``
sends a saved body again to show that a replay changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from local.invoker import ensure_layer_on_path
from local.neynar_stub import app_private_key
from local.send_webhook import post_and_print

EVENTS = ("miniapp_added", "miniapp_removed", "notifications_enabled", "notifications_disabled")


def signed_event(*, fid: int, event: str, url: str | None, token: str | None, signer_fid: int | None = None) -> bytes:
    """The JSON Farcaster Signature of ``event`` by ``fid`` (signed with ``signer_fid``'s key when given)."""
    ensure_layer_on_path()
    from such_market.notifications.signatures import sign

    payload: dict[str, object] = {"event": event}
    if url is not None and event in {"miniapp_added", "notifications_enabled"}:
        payload["notificationDetails"] = {"url": url, "token": token or f"local-{secrets.token_hex(8)}"}
    envelope = sign(fid=fid, private_key=app_private_key(signer_fid or fid), payload=payload)
    return json.dumps(envelope).encode()


def _spoiled(body: bytes) -> bytes:
    envelope = json.loads(body)
    signature = envelope["signature"]
    envelope["signature"] = ("A" if signature[0] != "A" else "B") + signature[1:]
    return json.dumps(envelope).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--fid", type=int)
    parser.add_argument("--event", choices=EVENTS, default="notifications_enabled")
    parser.add_argument("--url", help="the notification URL (make dev prints its stub's)")
    parser.add_argument("--token", help="the notification token (default: a fresh one)")
    parser.add_argument("--save", type=Path, help="also write the body to this file")
    parser.add_argument("--replay", type=Path, help="send this saved body again instead of a new event")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--bad-signature", action="store_true")
    mode.add_argument("--wrong-key", action="store_true")
    args = parser.parse_args(argv)
    if args.replay:
        body = args.replay.read_bytes()
    elif args.fid is None:
        parser.error("--fid is required (or --replay FILE)")
    else:
        if (
            args.event in {"miniapp_added", "notifications_enabled"}
            and args.url is None
            and args.event != "miniapp_added"
        ):
            parser.error("--url is required for notifications_enabled")
        signer = args.fid + 1 if args.wrong_key else None
        body = signed_event(fid=args.fid, event=args.event, url=args.url, token=args.token, signer_fid=signer)
        if args.bad_signature:
            body = _spoiled(body)
    if args.save:
        args.save.write_bytes(body)
    return post_and_print(f"{args.api}/api/webhook", body, {"content-type": "application/json"})


if __name__ == "__main__":
    sys.exit(main())
