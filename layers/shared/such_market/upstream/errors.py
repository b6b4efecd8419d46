"""The upstream error tree, shared by every upstream client (Alchemy, Neynar), and ``Retry-After`` parsing.

UpstreamError                 a call failed; names the upstream and method, never a key or a URL
├── UpstreamUnavailable       retryable failures (5xx, timeouts, connection errors, 429) that
│   │                         persisted through every allowed attempt
│   └── UpstreamRateLimited   the upstream kept answering 429; carries its last ``Retry-After``
├── UpstreamBadRequest        a 4xx other than 429: not retried
│   ├── UpstreamCredentialsRejected  401/403: the upstream refuses our key (a configuration fault)
│   └── UpstreamNotFound      404
└── UpstreamProtocolError     an unexpected status, or a body that is not the JSON object expected
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

from such_market.errors import SuchMarketError


class UpstreamError(SuchMarketError):
    """A call to an upstream API failed; the message names the method, never the key or the URL."""

    def __init__(self, method: str, detail: str, *, status: int | None = None, upstream: str = "Alchemy") -> None:
        self.method = method
        self.detail = detail
        self.status = status
        self.upstream = upstream
        answered = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{upstream} {method} failed{answered}: {detail}")


class UpstreamUnavailable(UpstreamError):  # noqa: N818 - the tree's names read as outcomes
    """Retryable failures (5xx, timeouts, connection errors, 429) persisted through every allowed attempt."""


class UpstreamRateLimited(UpstreamUnavailable):
    """The upstream kept answering 429; ``retry_after`` (seconds) is its last ``Retry-After``, if any."""

    def __init__(
        self,
        method: str,
        detail: str,
        *,
        retry_after: float | None,
        status: int | None = 429,
        upstream: str = "Alchemy",
    ) -> None:
        super().__init__(method, detail, status=status, upstream=upstream)
        self.retry_after = retry_after


class UpstreamBadRequest(UpstreamError):  # noqa: N818 - the tree's names read as outcomes
    """The upstream rejected the request with a 4xx other than 429 (bad input, bad key): not retried."""


class UpstreamCredentialsRejected(UpstreamBadRequest):
    """The upstream answered 401/403: it refuses the key we sent. A deployment fault, never retried."""


class UpstreamNotFound(UpstreamBadRequest):
    """The upstream answered 404."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with an unexpected status or a body that is not the JSON object expected."""


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
