"""A gate shared by the concurrent calls of one job to one upstream: bounded concurrency that backs off on 429.

``CallGate(maximum)`` lets at most ``limit`` calls through at once (``limit`` starts at ``maximum``). A 429
(``rate_limited(delay)``, ``delay`` being the ``Retry-After`` wait plus the caller's jittered backoff) halves
``limit`` (never below 1) and pauses every caller that enters the gate until the delay has passed, so
that a rate limit on the upstream's key slows the whole job rather than only the call that met it; each
``limit`` calls in a row that succeed raise it by one again, up to ``maximum`` (additive increase,
multiplicative decrease, as TCP does). The caller that met the 429 waits its own delay (the requester sleeps
it), so the gate does not make it wait twice.

``sleep`` and ``clock`` (monotonic seconds) are seams for tests; ``RetryingRequester`` drives the gate
(``acquire`` before each attempt, ``release`` after it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CallGate:
    """At most ``limit`` calls in flight; halved with a shared pause on each 429, grown back on success."""

    def __init__(
        self,
        maximum: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self._limit = maximum
        self._in_flight = 0
        self._successes = 0
        self._paused_until = 0.0
        self._sleep = sleep
        self._clock = clock
        self._slots = threading.Condition()
        self._local = threading.local()
        self.rate_limits = 0
        """429s reported so far (for logs and benchmarks)."""

    @property
    def limit(self) -> int:
        """How many calls may be in flight now."""
        with self._slots:
            return self._limit

    def pause_remaining(self) -> float:
        """Seconds until the pause of the last 429 ends (0 when there is none)."""
        with self._slots:
            return max(0.0, self._paused_until - self._clock())

    def acquire(self) -> None:
        """Wait out a pause this caller has not served itself, then for a free slot, and take it."""
        with self._slots:
            until = self._paused_until
        pause = until - self._clock()
        if pause > 0 and getattr(self._local, "served_until", None) != until:
            self._sleep(pause)
        with self._slots:
            while self._in_flight >= self._limit:
                self._slots.wait()
            self._in_flight += 1

    def release(self, *, succeeded: bool) -> None:
        """Give the slot back; ``succeeded`` counts towards raising the limit again."""
        with self._slots:
            self._in_flight -= 1
            if succeeded:
                self._successes += 1
                if self._successes >= self._limit and self._limit < self.maximum:
                    self._limit += 1
                    self._successes = 0
            self._slots.notify_all()

    def rate_limited(self, delay: float) -> None:
        """A call met a 429 and will retry after ``delay`` seconds: halve the limit and pause the others."""
        with self._slots:
            self.rate_limits += 1
            self._limit = max(1, self._limit // 2)
            self._successes = 0
            self._paused_until = max(self._paused_until, self._clock() + delay)
            self._local.served_until = self._paused_until  # the caller sleeps ``delay`` itself
