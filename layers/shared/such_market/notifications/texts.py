"""What a transfer notification says, and where it leads: one message for everything a digest collected.

One transfer: "NFT received" / "You received Punk #635 from 0x1234…abcd." or "NFT sent" / "Your Punk
#635 was transferred to 0x1234…abcd." (mints and burns say so). Several: counts, and the collection when
there is one ("You received 500 NFTs of Punks."). The token is named by its title, else by its
collection's name (else its short address) and number. Every text is cut to Farcaster's limits. The
target is the token's page in the mini-app (``<MINIAPP_URL>/collection/<address>/<tokenId>``), the
collection's page when all transfers are of one collection, else the user's page (``/profile/<fid>``).
"""

from __future__ import annotations

from such_market.notifications.queries import Digest, DigestTransfer
from such_market.notifications.rules import MAX_BODY_CHARS, MAX_TITLE_CHARS, Message, shorten
from such_market.validation import ZERO_ADDRESS


def short_address(address: str) -> str:
    """``0x1234…abcd``."""
    return f"{address[:6]}…{address[-4:]}"


def _number(token_id: int) -> str:
    text = str(token_id)
    return text if len(text) <= 12 else f"{text[:5]}…{text[-4:]}"


def token_name(transfer: DigestTransfer) -> str:
    """How the user knows the token: its title, else its collection's name and number."""
    if transfer.nft_title and transfer.nft_title.strip():
        return shorten(transfer.nft_title, 60)
    collection = shorten(transfer.collection_name, 40) if transfer.collection_name else None
    return f"{collection or short_address(transfer.contract_address)} #{_number(transfer.token_id)}"


def _collection(transfer: DigestTransfer) -> str:
    return (
        shorten(transfer.collection_name, 40) if transfer.collection_name else short_address(transfer.contract_address)
    )


def _one(transfer: DigestTransfer) -> tuple[str, str]:
    name = token_name(transfer)
    party = short_address(transfer.counterparty)
    if transfer.direction == "received":
        if transfer.counterparty == ZERO_ADDRESS:
            return "NFT minted", f"You minted {name}."
        return "NFT received", f"You received {name} from {party}."
    if transfer.counterparty == ZERO_ADDRESS:
        return "NFT burned", f"Your {name} was burned."
    return "NFT sent", f"Your {name} was transferred to {party}."


def _many(digest: Digest) -> tuple[str, str]:
    where = f"of {_collection(digest.first)}" if digest.collections == 1 else f"across {digest.collections} collections"
    if digest.sent == 0:
        return f"You received {digest.received} NFTs", f"You received {digest.received} NFTs {where}."
    if digest.received == 0:
        return f"{digest.sent} NFTs sent", f"{digest.sent} of your NFTs {where} were transferred out of your wallets."
    return "Your NFTs moved", f"You received {digest.received} and sent {digest.sent} NFTs {where}."


def transfer_message(digest: Digest, *, base_url: str, fid: int) -> Message:
    """The notification of a digest for user ``fid`` (see the module doc)."""
    title, body = _one(digest.first) if digest.received + digest.sent == 1 else _many(digest)
    base = base_url.rstrip("/")
    first = digest.first
    if digest.received + digest.sent == 1:
        target = f"{base}/collection/{first.contract_address}/{first.token_id}"
    elif digest.collections == 1:
        target = f"{base}/collection/{first.contract_address}"
    else:
        target = f"{base}/profile/{fid}"
    return Message(title=shorten(title, MAX_TITLE_CHARS), body=shorten(body, MAX_BODY_CHARS), target_url=target)
