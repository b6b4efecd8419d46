"""Exponential backoff: the one curve every retry of the backend follows (upstream calls, event
publishing, notification deliveries, ingestion retries); each caller adds its own jitter."""

from __future__ import annotations


def exponential_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """``base`` doubled after each failed attempt (attempt 1 waits ``base``), never more than ``cap``."""
    return min(cap, base * 2.0 ** max(0, attempt - 1))
