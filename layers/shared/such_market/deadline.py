"""One deadline per invocation: the time by which the function must have answered.

A Lambda invocation is killed at its timeout; the client then sees the platform's error, not ours. So the
entry points (``api_handler``, the event consumers) start a deadline from the context's remaining time
less ``SAFETY_MARGIN_SECONDS``, and everything that waits — upstream retries and their timeouts, fill
lease waits, database calls — asks ``remaining()`` and stops in time, so that the function still answers
its JSON error (503 with ``Retry-After``) before the platform would kill it.

The deadline lives in a context variable: each thread of the local runtime (and each invocation) has its
own. Without a started deadline (tests calling use cases directly, the local scripts) ``remaining()``
answers ``None`` and the callers keep their own bounds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final, Protocol

SAFETY_MARGIN_SECONDS: Final = 1.0
"""Kept back from the invocation's remaining time: enough to map the failure and return the answer."""
MINIMUM_SECONDS: Final = 0.5

_deadline: ContextVar[float | None] = ContextVar("such_market_deadline", default=None)


class HasRemainingTime(Protocol):
    """The part of a Lambda context the deadline reads."""

    def get_remaining_time_in_millis(self) -> int: ...


def _from_context(context: object) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        milliseconds = float(remaining())
    except (TypeError, ValueError):
        return None
    return max(MINIMUM_SECONDS, milliseconds / 1000 - SAFETY_MARGIN_SECONDS)


@contextlib.contextmanager
def invocation(context: object, *, cap_seconds: float | None = None) -> Iterator[float | None]:
    """Run the block under the invocation's deadline (the context's remaining time less the margin,
    optionally capped); yields the seconds granted, ``None`` without a usable context."""
    seconds = _from_context(context)
    if cap_seconds is not None:
        seconds = cap_seconds if seconds is None else min(seconds, cap_seconds)
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield seconds
    finally:
        _deadline.reset(token)


def at() -> float | None:
    """The deadline as a ``time.monotonic()`` instant, or ``None`` when none was started."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the deadline (never negative), or ``None`` when none was started."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def bounded(seconds: float) -> float:
    """``seconds``, or less when the deadline comes sooner."""
    left = remaining()
    return seconds if left is None else min(seconds, left)
