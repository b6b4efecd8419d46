"""A client-side bound on every database call of an invocation, for a server that stopped answering.

``statement_timeout`` is enforced by the server: a PostgreSQL that is frozen (paused, swapping, a dead
host whose kernel still holds the TCP connection) enforces nothing, and a request waiting on it would
hang until Lambda kills the function. Keepalives do not help while the peer's kernel still acknowledges.
So the client bounds the wait itself: while an invocation runs (``such_market.deadline``), every
connection it uses is *armed* until the invocation's deadline (work that holds a connection across many
statements — an ingestion, a sync — is bounded by the same deadline it must finish by anyway; a shorter
per-statement bound would cut those). One daemon thread per process watches
the armed connections; when one passes its time it shuts the connection's socket down, which wakes the
blocked call at once with ``psycopg.OperationalError`` (a 503 at the edge, or a STALE answer from the
cache front) and leaves the connection broken, so the next use opens a new one. When the invocation
ends, its connections are disarmed; connections used outside an invocation are never armed. Within a
shorter database bound (``deadline.database_until``: a cache fill with a kept value to fall back on)
a connection is armed until that bound instead, and back to the enclosing one when the block ends.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from such_market import deadline
from such_market.observability import logger

if TYPE_CHECKING:
    import psycopg


class _Watchdog:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, tuple[float, int, int]] = {}  # id(conn) → (expires, fd, generation)
        self._generations = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: psycopg.Connection[tuple[object, ...]], expires: float) -> None:
        try:
            fd = conn.fileno()
        except Exception:  # a closed connection has no socket: nothing to watch
            return
        with self._condition:
            generation = next(self._generations)
            self._armed[id(conn)] = (expires, fd, generation)
            heapq.heappush(self._heap, (expires, generation))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()

    def disarm(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with self._condition:
            self._armed.pop(id(conn), None)

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, generation = heapq.heappop(self._heap)
                    self._expire(generation)
                timeout = self._heap[0][0] - now if self._heap else None
                self._condition.wait(timeout)

    def _expire(self, generation: int) -> None:
        for key, (_, fd, armed_generation) in list(self._armed.items()):
            if armed_generation == generation:
                del self._armed[key]
                _shut(fd)
                return


def _shut(fd: int) -> None:
    """Shut a socket down without closing the descriptor (its owner closes it)."""
    try:
        duplicate = os.dup(fd)
    except OSError:
        return
    with contextlib.suppress(OSError), socket.socket(fileno=duplicate) as sock:  # closing it closes the duplicate
        sock.shutdown(socket.SHUT_RDWR)
    logger.warning("a database call passed its time; its connection was cut")


_watchdog = _Watchdog()


def guard(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Arm ``conn`` until the current database bound (``deadline.database_scope()``: the invocation's
    deadline, or a shorter block within it), if any; when that ends, ``conn`` is armed again for the
    enclosing bound that armed it, or disarmed (see the module doc)."""
    scope = deadline.database_scope()
    if scope is None or scope.ends is None:
        return
    key = ("db-watchdog", id(conn))
    if scope.once(key, lambda: _rearm_for(conn, key, scope.outer)):
        _watchdog.arm(conn, scope.ends)


def _rearm_for(
    conn: psycopg.Connection[tuple[object, ...]], key: tuple[str, int], outer: deadline.Invocation | None
) -> None:
    while outer is not None and not outer.holds(key):
        outer = outer.outer
    if outer is None or outer.ends is None or conn.closed or conn.broken:
        _watchdog.disarm(conn)
    else:
        _watchdog.arm(conn, outer.ends)
