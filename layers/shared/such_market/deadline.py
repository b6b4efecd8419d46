"""One deadline per invocation: the time by which the function must have answered.

A Lambda invocation is killed at its timeout; the client then sees the platform's error, not ours. So the
entry points (``api_handler``, the event consumers, the scheduled jobs) start an ``Invocation`` from the
context's remaining time less ``SAFETY_MARGIN_SECONDS``, and everything that waits — upstream retries and
their timeouts, fill lease waits, database connects and calls — asks ``remaining()`` and stops in time, so
that the function still answers its JSON error (503 with ``Retry-After``) before the platform would kill
it. What must be undone when the invocation ends (the database watchdog's arming) registers with
``Invocation.once``.

Database work may get a shorter bound than the invocation (``database_within``): a read with a kept value
to fall back on, or none, should not wait the whole deadline on a frozen database, while upstream work of
the same fill may rightly take longer. The bound is per database call (each connect, each use of the
connection), so time spent upstream between two calls never counts against it. ``database_scope()`` is
what bounds database work now (the innermost such block, else the invocation); the watchdog and the
connect timeout follow it.

The invocation lives in a context variable: each thread of the local runtime (and each invocation) has its
own. Without one (tests calling use cases directly, the local scripts) ``remaining()`` answers ``None`` and
the callers keep their own bounds. ``begin``/``end`` cost one context-variable set and reset: they run on
every cached read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar, Token
from typing import Final

SAFETY_MARGIN_SECONDS: Final = 1.0
"""Kept back from the invocation's remaining time: enough to map the failure and return the answer."""
MINIMUM_SECONDS: Final = 0.5


class Invocation:
    """One invocation (or one ``database_within`` block within it, ``outer`` being what encloses it): its
    deadline (a ``time.monotonic()`` instant, or ``None``), a block's per-call ``seconds``, and what to undo
    at its end."""

    __slots__ = ("_at_end", "ends", "outer", "seconds")

    def __init__(self, ends: float | None, outer: Invocation | None = None, seconds: float | None = None) -> None:
        self.ends = ends
        self.outer = outer
        self.seconds = seconds
        self._at_end: dict[Hashable, Callable[[], None]] | None = None

    def bound(self) -> float | None:
        """When a database call started now must end: ``seconds`` from now, never after ``ends``."""
        if self.seconds is None:
            return self.ends
        soon = time.monotonic() + self.seconds
        return soon if self.ends is None else min(soon, self.ends)

    def holds(self, key: Hashable) -> bool:
        """Whether something registered under ``key`` (and is not undone yet)."""
        return self._at_end is not None and key in self._at_end

    def once(self, key: Hashable, at_end: Callable[[], None]) -> bool:
        """Register ``at_end`` under ``key`` unless something already is; returns whether it was new."""
        if self._at_end is None:
            self._at_end = {}
        elif key in self._at_end:
            return False
        self._at_end[key] = at_end
        return True

    def finish(self) -> None:
        for callback in (self._at_end or {}).values():
            callback()
        self._at_end = None


_current: ContextVar[Invocation | None] = ContextVar("such_market_invocation", default=None)
_database: ContextVar[Invocation | None] = ContextVar("such_market_database_bound", default=None)


def _seconds_from(context: object) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        milliseconds = float(remaining())
    except (TypeError, ValueError):
        return None
    return max(MINIMUM_SECONDS, milliseconds / 1000 - SAFETY_MARGIN_SECONDS)


def begin(context: object, *, cap_seconds: float | None = None) -> Token[Invocation | None]:
    """Start the invocation of ``context`` (its remaining time less the margin, optionally capped)."""
    seconds = _seconds_from(context)
    if cap_seconds is not None:
        seconds = cap_seconds if seconds is None else min(seconds, cap_seconds)
    return _current.set(Invocation(None if seconds is None else time.monotonic() + seconds))


def end(token: Token[Invocation | None]) -> None:
    """End the invocation ``begin`` started: undo what registered, restore the previous one."""
    invocation = _current.get()
    _current.reset(token)
    if invocation is not None:
        invocation.finish()


@contextlib.contextmanager
def invocation(context: object, *, cap_seconds: float | None = None) -> Iterator[float | None]:
    """``begin``/``end`` around a block; yields the seconds granted (``None`` without a usable context)."""
    token = begin(context, cap_seconds=cap_seconds)
    try:
        yield remaining()
    finally:
        end(token)


def current() -> Invocation | None:
    """The running invocation, if any."""
    return _current.get()


def at() -> float | None:
    """The deadline as a ``time.monotonic()`` instant, or ``None`` when none was started."""
    running = _current.get()
    return None if running is None else running.ends


def remaining() -> float | None:
    """Seconds left before the deadline (never negative), or ``None`` when none was started."""
    ends = at()
    return None if ends is None else max(0.0, ends - time.monotonic())


def bounded(seconds: float) -> float:
    """``seconds``, or less when the deadline comes sooner."""
    left = remaining()
    return seconds if left is None else min(seconds, left)


def budget(cap_seconds: float, *, reserve_seconds: float = 0.0, minimum_seconds: float = MINIMUM_SECONDS) -> float:
    """How long a job of this invocation may run: ``cap_seconds``, cut to the time left before the
    deadline less ``reserve_seconds`` (kept to finish and answer), and never under ``minimum_seconds``."""
    left = remaining()
    if left is None:
        return cap_seconds
    return max(minimum_seconds, min(cap_seconds, left - reserve_seconds))


@contextlib.contextmanager
def database_within(seconds: float) -> Iterator[None]:
    """Bound each database call of a block to ``seconds`` (never past the enclosing bound); what registers
    with the block's ``once`` is undone when it ends (the watchdog re-arms a connection to the enclosing
    bound). Other waits keep the invocation's deadline."""
    outer = database_scope()
    scope = Invocation(None if outer is None else outer.bound(), outer, seconds)
    token = _database.set(scope)
    try:
        yield
    finally:
        _database.reset(token)
        scope.finish()


def database_scope() -> Invocation | None:
    """What bounds database work now: the innermost ``database_within`` block, else the invocation."""
    scope = _database.get()
    return scope if scope is not None else _current.get()


def database_remaining() -> float | None:
    """Seconds a database call started now may take (never negative), or ``None`` when nothing bounds it."""
    scope = database_scope()
    ends = None if scope is None else scope.bound()
    return None if ends is None else max(0.0, ends - time.monotonic())
