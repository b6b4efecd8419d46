"""``@per_container``: one object per key (and thread), kept until ``close_all``, ``None`` included."""

from __future__ import annotations

import threading
from collections.abc import Callable

from such_market.container import MAX_HANDED_OVER, per_container


def test_an_object_is_made_once_per_key_and_closed_newest_first() -> None:
    made: list[str] = []
    closed: list[str] = []

    @per_container(close=closed.append)
    def make(key: str) -> str:
        made.append(key)
        return f"object {key}"

    assert [make("a"), make("a"), make("b"), make("a")] == ["object a", "object a", "object b", "object a"]
    assert made == ["a", "b"]
    make.close_all()
    assert closed == ["object b", "object a"]
    # Forgotten: the next call makes a new one
    make("a")
    assert made == ["a", "b", "a"]


def test_none_is_kept_like_any_result_and_never_closed() -> None:
    calls: list[str] = []
    closed: list[object] = []

    @per_container(close=closed.append)
    def maybe(key: str) -> str | None:
        calls.append(key)
        return None

    for _ in range(3):
        assert maybe("off") is None
    assert calls == ["off"]
    maybe.close_all()
    assert closed == []


def test_an_object_that_may_not_be_reused_is_replaced() -> None:
    class Connection:
        broken = False

    @per_container(reuse=lambda connection: not connection.broken)
    def connect(key: str) -> Connection:
        return Connection()

    kept = connect("db")
    assert connect("db") is kept
    kept.broken = True
    replacement = connect("db")
    assert replacement is not kept
    assert connect("db") is replacement


def test_per_thread_objects_are_one_per_thread() -> None:
    @per_container(per_thread=True)
    def session(key: str) -> object:
        return object()

    mine = session("k")
    assert session("k") is mine
    theirs: list[object] = []
    thread = threading.Thread(target=lambda: theirs.extend([session("k"), session("k")]))
    thread.start()
    thread.join()
    assert theirs[0] is theirs[1]
    assert theirs[0] is not mine


def _in_a_thread(call: Callable[[], object]) -> object:
    made: list[object] = []
    thread = threading.Thread(target=lambda: made.append(call()))
    thread.start()
    thread.join()
    return made[0]


def test_a_per_thread_object_is_closed_when_its_thread_ends() -> None:
    # Given per-thread objects without a handover rule
    closed: list[object] = []

    @per_container(close=closed.append, per_thread=True)
    def session(key: str) -> object:
        return object()

    # When threads make one each and end (the local API's thread per TCP connection)
    first = _in_a_thread(lambda: session("k"))
    second = _in_a_thread(lambda: session("k"))
    # Then each thread's object was closed with its thread, and close_all does not close them twice
    assert closed == [first, second]
    session.close_all()
    assert closed == [first, second]


def test_an_ended_threads_object_serves_the_next_thread_when_it_may() -> None:
    # Given per-thread connections that may be handed over while idle
    class Connection:
        idle = True

    closed: list[Connection] = []

    @per_container(close=closed.append, per_thread=True, handover=lambda conn: conn.idle)
    def connect(key: str) -> Connection:
        return Connection()

    # When one thread after another uses one
    first = _in_a_thread(lambda: connect("db"))
    # Then the next thread gets the same connection: the process holds one, not one per thread
    assert _in_a_thread(lambda: connect("db")) is first
    assert closed == []

    # And a connection left inside a transaction is closed, never handed over
    def leave_busy() -> Connection:
        conn = connect("db")
        conn.idle = False
        return conn

    assert _in_a_thread(leave_busy) is first
    assert closed == [first]
    assert _in_a_thread(lambda: connect("db")) is not first


def test_a_burst_of_threads_keeps_at_most_a_few_objects_for_later() -> None:
    # Given more threads at once than MAX_HANDED_OVER
    closed: list[object] = []

    @per_container(close=closed.append, per_thread=True, handover=lambda _: True)
    def connect(key: str) -> object:
        return object()

    all_made = threading.Barrier(MAX_HANDED_OVER + 3)

    def hold() -> None:
        connect("db")
        all_made.wait()

    threads = [threading.Thread(target=hold) for _ in range(MAX_HANDED_OVER + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then when they have ended, the extra ones were closed and the kept ones close with the container
    assert len(closed) == 3
    connect.close_all()
    assert len(closed) == MAX_HANDED_OVER + 3


def test_a_replaced_per_thread_object_is_closed() -> None:
    class Connection:
        broken = False

    closed: list[Connection] = []

    @per_container(close=closed.append, reuse=lambda conn: not conn.broken, per_thread=True)
    def connect(key: str) -> Connection:
        return Connection()

    kept = connect("db")
    kept.broken = True
    assert connect("db") is not kept
    assert closed == [kept]


def test_close_all_closes_the_objects_of_running_threads_once() -> None:
    # Given an object of this (still running) thread
    closed: list[object] = []

    @per_container(close=closed.append, per_thread=True, handover=lambda _: True)
    def connect(key: str) -> object:
        return object()

    mine = connect("db")
    # When the container is closed (its thread slots are dropped with it), Then it is closed once
    connect.close_all()
    assert closed == [mine]
    assert connect("db") is not mine
