"""Objects created once per container and closed together: the one pattern for per-container state.

A Lambda container keeps its clients (database connection, cache client, httpx clients, the boto3
client), its validated settings and its runtimes between invocations. Each such object is made by a
function decorated with ``@per_container``: the first call with a key creates the object, later calls
return it. ``close_all()`` closes every object of every such function, newest first, and forgets them;
tests and the local runtime call it to start a cold container.

``per_thread=True`` keeps one object per thread and key (the database connection: the local runtime
and threaded tests serve several requests at once in one process, and a transaction is never shared);
``reuse`` says whether a kept object may still be used (a broken connection is replaced).

Lookups of an existing object take no lock (a dict read); creation of shared objects is serialized per
function, so two threads never build two clients for one key; per-thread objects are created without
the lock, so a slow creation on one thread never holds up another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, cast

from such_market import snapstart
from such_market.observability import logger

_registry: list[PerContainer[Any, Any]] = []
_ABSENT: Final = object()
"""No object kept for a key yet (``None`` is a result like any other: "no recorder here" is kept too)."""
_registry_lock = threading.Lock()


class PerContainer[K: Hashable, V]:
    """A function whose results are kept per key for the container's life (see the module doc)."""

    def __init__(
        self,
        create: Callable[[K], V],
        *,
        close: Callable[[V], object] | None = None,
        reuse: Callable[[V], bool] | None = None,
        per_thread: bool = False,
    ) -> None:
        self._create = create
        self._close = close
        self._reuse = reuse
        self._per_thread = per_thread
        self._shared: dict[K, V] = {}
        self._local = threading.local()
        self._made: list[V] = []  # every object made, on any thread, for close_all
        self._lock = threading.Lock()
        self.__doc__ = create.__doc__
        self.__name__ = getattr(create, "__name__", "per_container")
        with _registry_lock:
            _registry.append(self)

    def _values(self) -> dict[K, V]:
        if not self._per_thread:
            return self._shared
        values: dict[K, V] | None = getattr(self._local, "values", None)
        if values is None:
            values = self._local.values = {}
        return values

    def __call__(self, key: K) -> V:
        values = self._values()
        value = values.get(key, _ABSENT)
        if value is not _ABSENT and (self._reuse is None or self._reuse(cast("V", value))):
            return cast("V", value)
        if self._per_thread:
            # No other thread reads this thread's values: create without the lock, so that one thread's
            # slow creation (a connect to a frozen server) never holds up another's.
            value = self._create(key)
            values[key] = value
            with self._lock:
                self._made.append(value)
            return value
        with self._lock:
            kept = values.get(key, _ABSENT)
            if kept is not _ABSENT and (self._reuse is None or self._reuse(cast("V", kept))):
                return cast("V", kept)
            value = self._create(key)
            values[key] = value
            self._made.append(value)
            return value

    def close_all(self) -> None:
        """Close (when a closer was given) and forget every object this function made."""
        with self._lock:
            made, self._made = self._made, []
            self._shared.clear()
            self._local = threading.local()
        if self._close is None:
            return
        for value in reversed(made):
            if value is None:
                continue
            try:
                self._close(value)
            except Exception as error:  # closing is best effort: one failure must not keep others open
                logger.warning("closing a container object failed", extra={"error_type": type(error).__name__})


@dataclass(frozen=True, slots=True)
class _Decorator:
    close: Callable[[Any], object] | None
    reuse: Callable[[Any], bool] | None
    per_thread: bool

    def __call__[K: Hashable, V](self, create: Callable[[K], V]) -> PerContainer[K, V]:
        return PerContainer(create, close=self.close, reuse=self.reuse, per_thread=self.per_thread)


def per_container(
    *,
    close: Callable[[Any], object] | None = None,
    reuse: Callable[[Any], bool] | None = None,
    per_thread: bool = False,
) -> _Decorator:
    """Decorate ``create(key)`` so that its result is made once per container (and thread) and key;
    ``close(value)`` closes one (best effort), ``reuse(value)`` says whether a kept one is still usable."""
    return _Decorator(close, reuse, per_thread)


def close_all() -> None:
    """Close and forget every per-container object, newest function first (a cold container again)."""
    with _registry_lock:
        functions = list(reversed(_registry))
    for function in functions:
        function.close_all()


# Every function imports this module during init: the one place to register the SnapStart restore hook,
# before Lambda takes the snapshot. After a restore, close_all drops every connection and the secret cache.
snapstart.register_hooks(close_all)
