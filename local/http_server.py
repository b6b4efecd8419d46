"""A threaded HTTP server on loopback, served from a daemon thread: the lifecycle shared by the local
API, the local event bus and the stubs (``BackgroundHttpServer``, and ``LocalService`` for a stub that
starts one: ``start``/``stop`` and the context manager)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundHttpServer:
    """Serves ``handler`` on ``host:port`` (a free port when 0) until ``stop()``."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving, release the port and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class LocalService:
    """A local stand-in for a remote service: ``start()`` serves its ``handler_class()`` on
    ``host:port`` (a free port when 0); ``stop()``, and ``with service:`` around both."""

    name = "service"

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: BackgroundHttpServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler serving this service."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Listen (on a free port when ``port`` is 0) and serve from a daemon thread."""
        self._server = BackgroundHttpServer(self.host, self.port, self.handler_class(), name=self.name)
        self.port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
