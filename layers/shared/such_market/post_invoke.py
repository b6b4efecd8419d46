"""Work after the response and before Lambda freezes the container: an internal Lambda extension.

Lambda freezes an execution environment once its runtime *and every registered extension* have asked for
their next event. A function that registers an internal extension (a thread of its own process, through
the Extensions API at ``AWS_LAMBDA_RUNTIME_API``) so gets a window after each response: the runtime has
already posted the answer (the client does not wait), and the freeze waits until the extension asks for
its next event. ``PostInvoke`` runs its callbacks there: the analytics recorder writes what the
invocation recorded, so every invocation's figures reach Valkey before the container can be frozen or
recycled (a daemon thread cannot run while the container is frozen, and a recycled container never
thaws).

The loop, per invocation: ``GET …/extension/event/next`` returns the ``INVOKE`` event (the invocation has
started); the thread waits until the handler says it finished (``finished()``, counted, so no signal is
lost whichever comes first) or the invocation's own deadline passes; it runs the callbacks (each bounded
and guarded: a failure is logged, never raised); then asks for the next event, which tells Lambda it is
done. Extensions may register only during the init phase, so ``enable()`` runs at import of the handler
module (``http.api.api_handler``); it costs one local HTTP call and a thread. Without
``AWS_LAMBDA_RUNTIME_API`` (tests, ``make dev``) it does nothing: there the process is never frozen and the
recorder's own flusher thread writes behind.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

import orjson

from such_market.observability import logger

EXTENSION_NAME: Final = "such-market-post-invoke"
_API: Final = "/2020-01-01/extension"
_REGISTER_TIMEOUT_SECONDS: Final = 2.0
_FALLBACK_WAIT_SECONDS: Final = 30.0
"""How long the thread waits for a handler to finish when an event carries no deadline (never on Lambda)."""


class ExtensionError(RuntimeError):
    """The Extensions API refused or answered something unexpected."""


class PostInvoke:
    """One registered internal extension and its after-response callbacks (see the module doc)."""

    def __init__(self, runtime_api: str) -> None:
        host, _, port = runtime_api.rpartition(":")
        self._address = (host or "127.0.0.1", int(port))
        self._callbacks: list[Callable[[], object]] = []
        self._condition = threading.Condition()
        self._finished = 0
        self._started = 0
        self.identifier = ""

    # -- the handler's side -----------------------------------------------------------------------------
    def add(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after every invocation (once each, however many times it is added)."""
        with self._condition:
            if callback not in self._callbacks:
                self._callbacks.append(callback)

    def finished(self) -> None:
        """The handler of the current invocation returned (or raised): the callbacks may run."""
        with self._condition:
            self._finished += 1
            self._condition.notify_all()

    # -- the extension's side ---------------------------------------------------------------------------
    def register(self) -> None:
        """Register with the Extensions API (init phase only) and start the event loop thread."""
        status, headers, body = self._call(
            "POST",
            f"{_API}/register",
            {"Lambda-Extension-Name": EXTENSION_NAME},
            orjson.dumps({"events": ["INVOKE"]}),
            timeout=_REGISTER_TIMEOUT_SECONDS,
        )
        identifier = headers.get("lambda-extension-identifier")
        if status != 200 or not identifier:
            raise ExtensionError(f"extension registration answered {status}: {body[:200]!r}")
        self.identifier = identifier
        threading.Thread(target=self._loop, name=EXTENSION_NAME, daemon=True).start()

    def _loop(self) -> None:
        try:
            while True:
                event = self._next_event()
                if event.get("eventType") != "INVOKE":
                    self._run_callbacks()  # SHUTDOWN (external extensions only) or anything new: flush, stop
                    return
                self._after(event)
        except (OSError, ExtensionError, ValueError) as error:
            logger.warning("post-invoke extension stopped", extra={"error": str(error)[:200]})

    def _after(self, event: dict[str, object]) -> None:
        with self._condition:
            self._started += 1
            deadline_ms = event.get("deadlineMs")
            wait = (
                max(0.0, float(deadline_ms) / 1000 - time.time())
                if isinstance(deadline_ms, int | float)
                else _FALLBACK_WAIT_SECONDS
            )
            self._condition.wait_for(lambda: self._finished >= self._started, timeout=wait)
            # A handler that never said so (it was killed) must not leave the count behind.
            self._finished = max(self._finished, self._started)
            callbacks = list(self._callbacks)
        self._run_callbacks(callbacks)

    def _run_callbacks(self, callbacks: list[Callable[[], object]] | None = None) -> None:
        for callback in self._callbacks if callbacks is None else callbacks:
            try:
                callback()
            except Exception as error:  # a callback's failure must never stop the loop
                logger.warning("post-invoke callback failed", extra={"error_type": type(error).__name__})

    def _next_event(self) -> dict[str, object]:
        status, _, body = self._call("GET", f"{_API}/event/next", {"Lambda-Extension-Identifier": self.identifier})
        if status != 200:
            raise ExtensionError(f"next event answered {status}: {body[:200]!r}")
        event = orjson.loads(body)
        if not isinstance(event, dict):
            raise ExtensionError("next event is not an object")
        return event

    def _call(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b"", *, timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 exchange with the local API (``Connection: close``; ``timeout`` None blocks, as the
        long poll of ``event/next`` must). A few lines of socket code: ``http.client`` costs a cold start
        milliseconds of imports for two requests."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._address[0]}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        with socket.create_connection(self._address, timeout=timeout) as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ExtensionError(f"not an HTTP answer: {status_line[:80]!r}")
        answer_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
            if name
        }
        return int(parts[1]), answer_headers, payload


_enabled: PostInvoke | None = None
_lock = threading.Lock()


def enable(runtime_api: str | None = None) -> PostInvoke | None:
    """The process's registered extension, registering it on the first call when the Extensions API is
    there (``runtime_api`` or ``AWS_LAMBDA_RUNTIME_API``); ``None`` without it, or when it refused (logged:
    the recorder's flusher still writes behind)."""
    global _enabled  # noqa: PLW0603 - one extension per process, as Lambda has one per environment
    with _lock:
        if _enabled is not None:
            return _enabled
        address = runtime_api or os.environ.get("AWS_LAMBDA_RUNTIME_API")
        if not address:
            return None
        extension = PostInvoke(address)
        try:
            extension.register()
        except (OSError, ExtensionError, ValueError) as error:
            logger.warning("post-invoke extension not registered", extra={"error": str(error)[:200]})
            return None
        _enabled = extension
        return extension


def enabled() -> PostInvoke | None:
    """The registered extension, if any (one global read: called at the end of every invocation)."""
    return _enabled
