"""The HTTP plumbing shared by the upstream stubs (Alchemy, Neynar): a threaded loopback server that
hands every GET to the stub's ``answer`` and writes its (status, body, headers) back, and the one key
each stub accepts."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Self

from local.http_server import LocalService

Answer = tuple[int, bytes, Mapping[str, str]]


class StubServer(LocalService):
    """Start/stop, context manager, ``base_url``, the key check and fault injection of a stub;
    subclasses implement ``answer`` and ``reset_counters``.

    ``api_key`` is the only key the stub accepts, as a real service accepts only the account's own key:
    subclasses answer 401 to a request whose key ``accepts`` refuses.

    Faults, changeable while running: ``latency_ms`` added to every request, every ``rate_limit_every``-th
    request answers 429 (``Retry-After: retry_after_seconds``), every ``server_error_every``-th answers 503,
    and ``truncate_bodies`` sends half of every body and drops the connection (a proxy or the network
    cutting an answer short: the client sees the body end before its ``Content-Length``).
    """

    name = "stub"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        api_key: str,
        latency_ms: float = 0,
        rate_limit_every: int = 0,
        retry_after_seconds: int = 1,
        server_error_every: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.rate_limit_every = rate_limit_every
        self.retry_after_seconds = retry_after_seconds
        self.server_error_every = server_error_every
        self.truncate_bodies = False

    def accepts(self, api_key: str | None) -> bool:
        """Whether a request carrying ``api_key`` is authenticated (only the configured key is)."""
        return api_key == self.api_key

    def reset_counters(self) -> None:
        """Forget every request counted so far."""
        raise NotImplementedError

    def reset(self) -> Self:
        """No faults injected, counters at zero (what each test starts from)."""
        self.latency_ms = 0
        self.rate_limit_every = 0
        self.server_error_every = 0
        self.truncate_bodies = False
        self.reset_counters()
        return self

    def answer(self, path: str, headers: Mapping[str, str]) -> Answer:
        """The response to ``GET path`` (called on the server's threads; header names lower-cased)."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """The origin to configure the client with."""
        if not self.running:
            raise RuntimeError("the stub is not running")
        return f"http://{self.host}:{self.port}"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body, headers = stub.answer(
                    self.path, {name.lower(): value for name, value in self.headers.items()}
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if stub.truncate_bodies and len(body) > 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: tests and ``make dev`` read the counters, not an access log."""

        return Handler


def run_in_foreground(stub: StubServer, *lines: str) -> None:
    """Serve ``stub`` until Ctrl-C, printing where it is and ``lines`` (the stubs' ``python -m`` entry)."""
    with stub:
        print(f"{stub.name} on {stub.base_url}; Ctrl-C stops it", flush=True)
        for line in lines:
            print(f"  {line}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)


def stub_main(make: Callable[..., StubServer], *, default_key: str, upstream: str, contents: str) -> None:
    """The ``python -m local.<name>_stub`` entry point: parse ``--host --port --latency-ms --api-key``,
    build the stub with ``make(**options)`` and serve it in the foreground, telling which variables to set."""
    parser = argparse.ArgumentParser(description=f"A local {upstream.title()}-compatible stub.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--api-key", default=default_key, help="the only key the stub accepts")
    arguments = parser.parse_args()
    stub = make(host=arguments.host, port=arguments.port, api_key=arguments.api_key, latency_ms=arguments.latency_ms)
    run_in_foreground(stub, f"set {upstream}_BASE_URL to that address and {upstream}_API_KEY={stub.api_key}", contents)
