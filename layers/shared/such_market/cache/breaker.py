"""A circuit breaker around the cache: after a few consecutive failures, stop calling it for a while.

Closed: every call goes to the cache. After ``failure_threshold`` consecutive failures the breaker
opens for ``open_seconds``: requests skip the cache entirely (served from PostgreSQL, ``BYPASS``), so
an outage costs each request nothing after the first few timeouts. Then one trial call is let through
(half-open); its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Counts consecutive failures; thread-safe and cheap on the closed path."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._trial_in_flight = False

    def allow(self) -> bool:
        """Whether the next call may go to the cache (closed, or the single half-open trial)."""
        if self._open_until == 0.0:
            return True  # closed: the hot path takes no lock
        with self._lock:
            if self._clock() < self._open_until or self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    @property
    def closed(self) -> bool:
        """Whether calls go to the cache now; unlike ``allow`` it never takes the half-open trial, so a
        caller that only asks (analytics flushes) cannot leave the trial in flight unanswered."""
        return self._open_until == 0.0

    def record_success(self) -> None:
        if self._failures or self._open_until:
            with self._lock:
                self._failures = 0
                self._open_until = 0.0
                self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._failures >= self._threshold or self._open_until:
                self._open_until = self._clock() + self._open_seconds
