"""``such_market.deadline``: how a Lambda context's remaining time becomes the invocation's deadline.

The deadline is an instant on ``time.monotonic()``, fixed when the invocation begins: the tests bracket
``begin`` between two clock readings, so they check the arithmetic exactly, whatever the machine's speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from such_market import deadline


class _Context:
    """The part of the Lambda context the deadline reads."""

    def __init__(self, remaining_ms: object) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> object:
        return self._remaining_ms


@contextmanager
def _begun(context: object, *, cap_seconds: float | None = None) -> Iterator[tuple[float, float, float | None]]:
    """Begin an invocation of ``context``; yields the clock before and after ``begin``, and the deadline."""
    before = time.monotonic()
    token = deadline.begin(context, cap_seconds=cap_seconds)
    after = time.monotonic()
    try:
        yield before, after, deadline.at()
    finally:
        deadline.end(token)


def _assert_granted(bracket: tuple[float, float, float | None], seconds: float) -> None:
    before, after, ends = bracket
    assert ends is not None
    assert before + seconds <= ends <= after + seconds


@pytest.mark.parametrize(
    ("remaining_ms", "granted_seconds"),
    [
        (10_000, 9.0),  # the API functions' Timeout: 10 s, less the one-second margin
        (30_000, 29.0),
        (900_000, 899.0),
        (1_600, 0.6),
    ],
)
def test_the_deadline_is_the_remaining_milliseconds_in_seconds_less_a_one_second_margin(remaining_ms, granted_seconds):
    # Given a Lambda context with this much time left, in milliseconds as Lambda reports it
    # When the invocation begins
    with _begun(_Context(remaining_ms)) as bracket:
        # Then the deadline is that time in seconds less one second (not less one millisecond, not
        # the milliseconds read as seconds), and the budget left says the same
        _assert_granted(bracket, granted_seconds)
        left = deadline.remaining()
        assert left is not None
        assert left <= granted_seconds


def test_a_nearly_spent_invocation_still_gets_the_minimum_to_answer():
    # Given a context with less time left than the margin
    with _begun(_Context(700)) as bracket:
        # Then the work still gets half a second to answer its error, rather than none
        _assert_granted(bracket, 0.5)


def test_a_cap_shortens_the_deadline_and_stands_alone_without_a_context():
    with _begun(_Context(10_000), cap_seconds=3.0) as bracket:
        _assert_granted(bracket, 3.0)
    with _begun(_Context(2_000), cap_seconds=3.0) as bracket:
        _assert_granted(bracket, 1.0)
    with _begun(None, cap_seconds=3.0) as bracket:
        _assert_granted(bracket, 3.0)


@pytest.mark.parametrize("context", [None, object(), _Context("soon"), _Context(None)])
def test_without_a_usable_context_there_is_no_deadline(context):
    with _begun(context) as (_, _, ends):
        assert ends is None
        assert deadline.remaining() is None
        assert deadline.bounded(4.0) == 4.0
        assert deadline.budget(60.0) == 60.0


def test_bounds_and_budgets_are_cut_to_the_deadline():
    with _begun(_Context(3_000)):
        # 2 s granted: a 5 s wait is cut below 2 s, a 1 s wait stays
        assert deadline.bounded(5.0) <= 2.0
        assert deadline.bounded(1.0) == 1.0
        assert 1.0 < deadline.budget(60.0, reserve_seconds=0.5) <= 1.5
        assert deadline.budget(60.0, reserve_seconds=10.0, minimum_seconds=0.25) == 0.25


def test_the_invocation_ends_with_its_undo_steps_and_restores_the_outer_one():
    undone: list[str] = []
    with deadline.invocation(_Context(20_000)) as outer_seconds:
        assert outer_seconds is not None
        outer = deadline.at()
        with deadline.invocation(_Context(5_000)):
            running = deadline.current()
            assert running is not None
            assert running.once("watchdog", lambda: undone.append("disarmed"))
            assert not running.once("watchdog", lambda: undone.append("twice"))
        assert undone == ["disarmed"]
        assert deadline.at() == outer
    assert deadline.current() is None


def test_each_thread_has_its_own_invocation():
    seen: list[float | None] = []
    with deadline.invocation(_Context(10_000)):
        thread = threading.Thread(target=lambda: seen.append(deadline.at()))
        thread.start()
        thread.join()
    assert seen == [None]
