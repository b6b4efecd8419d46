"""``@per_container``: one object per key (and thread), kept until ``close_all``, ``None`` included."""

from __future__ import annotations

import threading

from such_market.container import per_container


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
