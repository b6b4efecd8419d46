"""Objects created once per container and closed together: the one pattern for per-container state.

A Lambda container keeps its clients (database connection, cache client, httpx clients, the boto3
client), its validated settings and its runtimes between invocations. Each such object is made by a
function decorated with ``@per_container``: the first call with a key creates the object, later calls
return it. ``close_all()`` closes every object of every such function, newest first, and forgets them;
tests and the local runtime call it to start a cold container.

``per_thread=True`` keeps one object per thread and key (the database connection: the local runtime
and threaded tests serve several requests at once in one process, and a transaction is never shared);
``reuse`` says whether a kept object may still be used (a broken connection is replaced, and closed).
A thread's objects do not outlive it: when the thread ends, each is handed over to the next new thread
(when ``handover`` says it may be, up to ``MAX_HANDED_OVER`` per key) or closed. The local API starts a
thread per TCP connection and the scheduler one per run: without this, every request on a new TCP
connection left a database connection open until PostgreSQL refused clients (about 195 requests).
On Lambda the one request thread never ends, so nothing changes there.

Lookups of an existing object take no lock (a dict read); creation of shared objects is serialized per
function, so two threads never build two clients for one key; per-thread objects are created without
the lock, so a slow creation on one thread never holds up another.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, cast

from such_market import snapstart

_registry: list[PerContainer[Any, Any]] = []
_ABSENT: Final = object()
"""No object kept for a key yet (``None`` is a result like any other: "no recorder here" is kept too)."""
_registry_lock = threading.Lock()
MAX_HANDED_OVER: Final = 4
"""Objects of ended threads kept per key for new threads; a burst of threads closes the rest as they end."""


class _ThreadSlot:
    """A thread's objects of one function, referenced only from that thread's local storage: it is
    released when the thread ends, and its finalizer hands the objects over (see the module doc)."""

    __slots__ = ("__weakref__", "values")

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}


class PerContainer[K: Hashable, V]:
    """A function whose results are kept per key for the container's life (see the module doc)."""

    def __init__(
        self,
        create: Callable[[K], V],
        *,
        close: Callable[[V], object] | None = None,
        reuse: Callable[[V], bool] | None = None,
        per_thread: bool = False,
        handover: Callable[[V], bool] | None = None,
    ) -> None:
        self._create = create
        self._close = close
        self._reuse = reuse
        self._per_thread = per_thread
        self._handover = handover
        self._shared: dict[K, V] = {}
        self._local = threading.local()
        self._made: dict[int, V] = {}  # id → every live object made, on any thread, oldest first, for close_all
        self._handed_over: dict[K, list[V]] = {}  # objects of ended threads, waiting for a new thread
        # Re-entrant: a thread's slot may be finalized by a garbage collection that runs while this
        # thread holds the lock, and its finalizer takes the lock too.
        self._lock = threading.RLock()
        self.__doc__ = create.__doc__
        self.__name__ = getattr(create, "__name__", "per_container")
        with _registry_lock:
            _registry.append(self)

    def _values(self) -> dict[K, V]:
        if not self._per_thread:
            return self._shared
        slot: _ThreadSlot | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _ThreadSlot()
            # The finalizer holds the values, not the slot: the slot dies with the thread's local storage.
            weakref.finalize(slot, self._thread_ended, slot.values).atexit = False
        return slot.values

    def __call__(self, key: K) -> V:
        values = self._values()
        value = values.get(key, _ABSENT)
        if value is not _ABSENT and (self._reuse is None or self._reuse(cast("V", value))):
            return cast("V", value)
        if self._per_thread:
            if value is not _ABSENT:
                self._discard(cast("V", value))
            # No other thread reads this thread's values: create without the lock, so that one thread's
            # slow creation (a connect to a frozen server) never holds up another's.
            handed = self._take_handed_over(key)
            if handed is _ABSENT:
                made = self._create(key)
                with self._lock:
                    self._made[id(made)] = made
            else:
                made = cast("V", handed)
            values[key] = made
            return made
        with self._lock:
            kept = values.get(key, _ABSENT)
            if kept is not _ABSENT and (self._reuse is None or self._reuse(cast("V", kept))):
                return cast("V", kept)
            value = self._create(key)
            values[key] = value
            self._made[id(value)] = value
            return value

    def _take_handed_over(self, key: K) -> V | object:
        """An object an ended thread left for ``key`` that may still be used, or ``_ABSENT``."""
        unusable: list[V] = []
        taken: V | object = _ABSENT
        with self._lock:
            waiting = self._handed_over.get(key)
            while waiting:
                candidate = waiting.pop()
                if self._reuse is None or self._reuse(candidate):
                    taken = candidate
                    break
                unusable.append(candidate)
        for value in unusable:
            self._discard(value)
        return taken

    def _thread_ended(self, values: dict[K, V]) -> None:
        """Hand a finished thread's objects over to new threads, or close them."""
        for key, value in values.items():
            with self._lock:
                if self._made.get(id(value)) is not value:
                    continue  # already closed by close_all
                waiting = self._handed_over.setdefault(key, [])
                if self._handover is not None and len(waiting) < MAX_HANDED_OVER and self._handover(value):
                    waiting.append(value)
                    continue
            self._discard(value)

    def _discard(self, value: V) -> None:
        """Forget and close one object (a replaced one, or one of an ended thread)."""
        with self._lock:
            if self._made.pop(id(value), None) is not value:
                return
        self._close_quietly(value)

    def _close_quietly(self, value: V) -> None:
        if self._close is None or value is None:
            return
        try:
            self._close(value)
        except Exception as error:  # closing is best effort: one failure must not keep others open
            from such_market.observability import logger  # logging stays off the authorizer's cold path

            logger.warning("closing a container object failed", extra={"error_type": type(error).__name__})

    def close_all(self) -> None:
        """Close (when a closer was given) and forget every object this function made."""
        with self._lock:
            made, self._made = self._made, {}
            self._shared.clear()
            self._handed_over.clear()
            forgotten, self._local = self._local, threading.local()
        # Dropped outside the lock: its threads' slots die with it, and their finalizers take the lock.
        del forgotten
        for value in reversed(made.values()):
            self._close_quietly(value)


@dataclass(frozen=True, slots=True)
class _Decorator:
    close: Callable[[Any], object] | None
    reuse: Callable[[Any], bool] | None
    per_thread: bool
    handover: Callable[[Any], bool] | None

    def __call__[K: Hashable, V](self, create: Callable[[K], V]) -> PerContainer[K, V]:
        return PerContainer(
            create, close=self.close, reuse=self.reuse, per_thread=self.per_thread, handover=self.handover
        )


def per_container(
    *,
    close: Callable[[Any], object] | None = None,
    reuse: Callable[[Any], bool] | None = None,
    per_thread: bool = False,
    handover: Callable[[Any], bool] | None = None,
) -> _Decorator:
    """Decorate ``create(key)`` so that its result is made once per container (and thread) and key;
    ``close(value)`` closes one (best effort), ``reuse(value)`` says whether a kept one is still usable,
    ``handover(value)`` whether an ended thread's one may serve a new thread (else it is closed)."""
    return _Decorator(close, reuse, per_thread, handover)


def close_all() -> None:
    """Close and forget every per-container object, newest function first (a cold container again)."""
    with _registry_lock:
        functions = list(reversed(_registry))
    for function in functions:
        function.close_all()


# Every function imports this module during init: the one place to register the SnapStart restore hook,
# before Lambda takes the snapshot. After a restore, close_all drops every connection and the secret cache.
snapstart.register_hooks(close_all)
