"""Farcaster's rules for mini-app notifications, in one place: sizes, URLs and per-token limits.

A notification is ``{notificationId, title, body, targetUrl, tokens}``: ``notificationId`` ≤ 128
characters (clients deduplicate on it with the fid for 24 hours), ``title`` ≤ 32, ``body`` ≤ 128,
``targetUrl`` ≤ 1024 and on the mini-app's domain, ≤ 100 tokens per request, all of one client URL. A
token may receive 1 notification per 30 s and 100 per day. ``Message`` is a title, body and target URL
that obey these rules (``ValueError`` naming the rule otherwise); ``shorten`` fits generated text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

MAX_TITLE_CHARS: Final = 32
MAX_BODY_CHARS: Final = 128
MAX_TARGET_URL_CHARS: Final = 1024
MAX_NOTIFICATION_ID_CHARS: Final = 128
MAX_TOKENS_PER_REQUEST: Final = 100
TOKEN_MIN_INTERVAL: Final = timedelta(seconds=30)
TOKEN_DAILY_LIMIT: Final = 100
MAX_CLIENT_URLS_PER_FID: Final = 4
"""Enabled client URLs one fid keeps (ours, not Farcaster's: users have a client or two; each URL costs the
sender a request, so one account must not make it wait on many)."""
DEDUPLICATION_WINDOW: Final = timedelta(hours=24)
"""How long clients deduplicate a notificationId: a delivery not made within it is given up (expired)."""


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis when it is longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def same_site(url: str, base_url: str) -> bool:
    """Whether ``url`` is an https URL on the host (and port) of ``base_url``."""
    try:
        target, base = urlsplit(url), urlsplit(base_url)
    except ValueError:
        return False
    return target.scheme == "https" and target.netloc.lower() == base.netloc.lower() and " " not in url


def acceptable_client_url(url: str, *, allow_local_stub: bool) -> bool:
    """Whether ``url`` may be stored and posted to: https on a host name (no IP literal, no localhost,
    no credentials), ≤ 1024 characters; plain http and any host too when ``allow_local_stub``. This is the
    early refusal of what is plainly wrong; the address actually connected to is checked at connection
    time (``notifications.addresses``), since a host name proves nothing about where it leads."""
    if len(url) > MAX_TARGET_URL_CHARS or any(character.isspace() or character == "\x00" for character in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if allow_local_stub:
        return parts.scheme in {"http", "https"} and bool(host)
    if parts.scheme != "https" or not host or parts.username or parts.password:
        return False
    return _public_host_name(host)


def _public_host_name(host: str) -> bool:
    """A DNS name that is neither an IP literal nor a local-only name."""
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "." in host
    return False


@dataclass(frozen=True, slots=True)
class Message:
    """What a notification says and where it leads, within Farcaster's limits."""

    title: str
    body: str
    target_url: str

    def check(self, base_url: str) -> Message:
        """This message when it obeys the rules (target on ``base_url``'s site); ``ValueError`` otherwise."""
        if not 0 < len(self.title) <= MAX_TITLE_CHARS:
            raise ValueError(f"title must be 1 to {MAX_TITLE_CHARS} characters")
        if not 0 < len(self.body) <= MAX_BODY_CHARS:
            raise ValueError(f"body must be 1 to {MAX_BODY_CHARS} characters")
        if not 0 < len(self.target_url) <= MAX_TARGET_URL_CHARS:
            raise ValueError(f"targetUrl must be 1 to {MAX_TARGET_URL_CHARS} characters")
        if not same_site(self.target_url, base_url):
            raise ValueError(f"targetUrl must be an https URL on {urlsplit(base_url).netloc}")
        if "\x00" in self.title + self.body + self.target_url:
            raise ValueError("title, body and targetUrl must not contain NUL characters")
        return self
