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
per-call database bound (``deadline.database_within``: a cache fill) a connection is armed afresh at each
use, and cut at the bound only if a command is then in flight (a fill waiting on an upstream between
two queries keeps its connection, watched to the enclosing bound); when the block ends, it is armed
for the enclosing bound again.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from such_market import deadline
from such_market.observability import logger

if TYPE_CHECKING:
    import psycopg


class _Arm(NamedTuple):
    expires: float
    fd: int
    generation: int
    idle: Callable[[], bool] | None
    """For a per-call bound: whether no command is in flight (then the connection is not cut)..."""
    then: float | None
    """...but watched until this instant instead (the enclosing bound), or no longer when ``None``."""


class _Watchdog:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, _Arm] = {}  # id(conn) → its arm
        self._generations = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        expires: float,
        *,
        per_call: bool = False,
        then: float | None = None,
    ) -> None:
        """Cut ``conn`` at ``expires``; with ``per_call``, only if a command is then in flight (a
        connection idle while its caller waits on something else is watched until ``then`` instead)."""
        try:
            fd = conn.fileno()
        except Exception:  # a closed connection has no socket: nothing to watch
            return
        idle = (lambda: conn.pgconn.transaction_status != _ACTIVE) if per_call else None
        with self._condition:
            self._push(id(conn), _Arm(expires, fd, next(self._generations), idle, then))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()

    def _push(self, key: int, arm: _Arm) -> None:
        self._armed[key] = arm
        heapq.heappush(self._heap, (arm.expires, arm.generation))

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
        for key, arm in list(self._armed.items()):
            if arm.generation != generation:
                continue
            del self._armed[key]
            if arm.idle is not None and arm.idle():
                if arm.then is not None:
                    self._push(key, _Arm(arm.then, arm.fd, next(self._generations), None, None))
                return
            _shut(arm.fd)
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


_ACTIVE = 1  # libpq's PQTRANS_ACTIVE: a command is in flight (psycopg.pq.TransactionStatus.ACTIVE)
_watchdog = _Watchdog()


def guard(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Arm ``conn`` until the current database bound (``deadline.database_scope()``: the invocation's
    deadline, or a per-call bound within it, armed afresh at each use), if any; when a block with its own
    bound ends, ``conn`` is armed again for the enclosing bound that armed it, or disarmed (see the module
    doc)."""
    scope = deadline.database_scope()
    if scope is None:
        return
    ends = scope.bound()
    if ends is None:
        return
    key = ("db-watchdog", id(conn))
    new = scope.once(key, lambda: _rearm_for(conn, key, scope.outer))
    if scope.seconds is not None:
        _watchdog.arm(conn, ends, per_call=True, then=scope.ends)
    elif new:
        _watchdog.arm(conn, ends)


def _rearm_for(
    conn: psycopg.Connection[tuple[object, ...]], key: tuple[str, int], outer: deadline.Invocation | None
) -> None:
    while outer is not None and not outer.holds(key):
        outer = outer.outer
    ends = None if outer is None else outer.bound()
    if outer is None or ends is None or conn.closed or conn.broken:
        _watchdog.disarm(conn)
    else:
        _watchdog.arm(conn, ends, per_call=outer.seconds is not None, then=outer.ends)
