"""The client of the Farcaster clients' notification endpoints: one POST per batch of ≤ 100 tokens.

``send(url=…, notification_id=…, message=…, tokens=…)`` posts ``{notificationId, title, body, targetUrl,
tokens}`` to the URL a client gave with its tokens, and returns its ``SendResult`` (``successfulTokens``,
``invalidTokens``, ``rateLimitedTokens``, ``failedTokens`` with their reasons). It is built on the shared
upstream base (``such_market.upstream.retrying``): one httpx client with explicit timeouts, no
redirects, bounded jittered retries of 429 (honouring ``Retry-After``), 5xx and timeouts within one call
— safe for a POST because clients deduplicate on the notification id — and failures raised as the
``UpstreamError`` tree (``upstream="Farcaster client"``), so the sender can tell "retry later"
(``UpstreamUnavailable``/``UpstreamRateLimited``) from "never" (``UpstreamBadRequest``) and the edge maps
them like any upstream's. A URL the rules refuse (``rules.acceptable_client_url``) is never called, and
connections go only to public addresses, checked after resolution (``notifications.addresses``): a host
that leads anywhere else is refused before any byte is sent (``UpstreamBadRequest``), redirects are never
followed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from such_market.container import per_container
from such_market.notifications.addresses import ForbiddenAddressError, Resolver, guarded_transport, resolve
from such_market.notifications.rules import MAX_TOKENS_PER_REQUEST, Message, acceptable_client_url
from such_market.notifications.settings import NotificationSettings
from such_market.upstream.errors import UpstreamBadRequest, UpstreamProtocolError
from such_market.upstream.retrying import JsonUpstream, RetryPolicy

UPSTREAM: Final = "Farcaster client"
_METHOD: Final = "sendNotification"


@dataclass(frozen=True, slots=True)
class SendResult:
    """A client's answer: which tokens got the notification, which are invalid, rate limited or failed."""

    successful: frozenset[str]
    invalid: frozenset[str]
    rate_limited: frozenset[str]
    failed: dict[str, str]  # token -> reason (domain_mismatch, target_url_mismatch, invalid_token, …)


def _tokens(value: object, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(token, str) for token in value):
        raise UpstreamProtocolError(_METHOD, f"{name} is not a list of tokens", upstream=UPSTREAM)
    return frozenset(value)


def parse_result(payload: dict[str, Any]) -> SendResult:
    """The ``result`` of a client's answer (missing lists are empty)."""
    result = payload.get("result")
    if not isinstance(result, dict):
        raise UpstreamProtocolError(_METHOD, "the answer has no result object", upstream=UPSTREAM)
    failed: dict[str, str] = {}
    for item in result.get("failedTokens") or []:
        if isinstance(item, dict) and isinstance(item.get("token"), str):
            failed[item["token"]] = str(item.get("reason") or "unknown")[:64]
    return SendResult(
        successful=_tokens(result.get("successfulTokens"), "successfulTokens"),
        invalid=_tokens(result.get("invalidTokens"), "invalidTokens"),
        rate_limited=_tokens(result.get("rateLimitedTokens"), "rateLimitedTokens"),
        failed=failed,
    )


class NotificationClient(JsonUpstream):
    """POSTs notifications to the clients' URLs. Thread-safe; create once per container.

    ``transport`` (which replaces the address guard), ``resolver``, ``sleep`` and ``jitter`` are seams for
    tests; ``allow_local_stub`` admits plain http and loopback addresses (``NotificationSettings``).
    """

    def __init__(
        self,
        *,
        allow_local_stub: bool = False,
        request_attempts: int = 2,
        connect_timeout_seconds: float = 2.0,
        read_timeout_seconds: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver = resolve,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.allow_local_stub = allow_local_stub
        super().__init__(
            upstream=UPSTREAM,
            base_url="",
            transport=transport or guarded_transport(allow_loopback=allow_local_stub, resolver=resolver),
            secrets=(),
            policy=RetryPolicy(max_attempts=request_attempts, budget_seconds=8.0, backoff_cap_seconds=2.0),
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            sleep=sleep,
            jitter=jitter,
        )

    @classmethod
    def from_settings(cls, settings: NotificationSettings) -> NotificationClient:
        """A client bounded as ``settings`` say."""
        return cls(
            allow_local_stub=settings.notification_allow_loopback_for_local_stub,
            request_attempts=settings.notification_request_attempts,
            connect_timeout_seconds=settings.notification_connect_timeout_seconds,
            read_timeout_seconds=settings.notification_read_timeout_seconds,
        )

    def send(self, *, url: str, notification_id: str, message: Message, tokens: Sequence[str]) -> SendResult:
        """Send one notification to ``tokens`` (1 … 100, all of ``url``)."""
        if not 0 < len(tokens) <= MAX_TOKENS_PER_REQUEST:
            raise ValueError(f"a request carries 1 to {MAX_TOKENS_PER_REQUEST} tokens")
        if not acceptable_client_url(url, allow_local_stub=self.allow_local_stub):
            raise UpstreamBadRequest(_METHOD, "the notification URL is not acceptable", upstream=UPSTREAM)
        body = {
            "notificationId": notification_id,
            "title": message.title,
            "body": message.body,
            "targetUrl": message.target_url,
            "tokens": list(tokens),
        }
        try:
            return parse_result(self._requester.post(_METHOD, body, path=url))
        except ForbiddenAddressError as error:
            raise UpstreamBadRequest(_METHOD, str(error), upstream=UPSTREAM) from None
        except httpx.InvalidURL:  # e.g. a host httpx reads as a malformed IPv4 address (0177.0.0.1)
            raise UpstreamBadRequest(_METHOD, "the notification URL is not a valid URL", upstream=UPSTREAM) from None


@per_container(close=NotificationClient.close)
def get_notification_client(settings: NotificationSettings) -> NotificationClient:
    """The container's notification client for ``settings``."""
    return NotificationClient.from_settings(settings)
