"""A Farcaster client's notification endpoint, for tests and ``make dev``: records what it receives.

``POST /notify`` (the URL a mini-app event's ``notificationDetails.url`` names, ``stub.url``) takes
``{notificationId, title, body, targetUrl, tokens}`` and answers like a Farcaster client::

    {"result": {"successfulTokens": [...], "invalidTokens": [...], "rateLimitedTokens": [...]}}

It checks the request as a client does (400 for a title over 32, a body over 128 characters, more than
100 tokens, a targetUrl that is not https or over 1024), deduplicates on (notificationId, token) as
clients do for 24 hours (a repeat is successful but not shown twice), and enforces Farcaster's
per-token limits (1 per 30 s, 100 per day: the token is answered rate limited), so a sender that does
not respect them is caught. On demand: tokens in ``invalid_tokens`` (or starting with ``invalid-``) are
answered invalid, tokens in ``rate_limited_tokens`` (or starting with ``ratelimited-``) rate limited;
``fail_next(n, status)`` answers the next n requests with that status (5xx or 429).

``shown`` is every notification a user saw (token, id, title, body, target); ``requests`` every request
received. Over HTTP: ``GET /notifications`` lists what was shown, ``POST /control`` with
``{"invalid": [...], "rateLimited": [...], "failNext": n, "status": 503}`` changes the answers, and
``POST /reset`` forgets everything. Run it alone with ``python -m local.notification_stub [--port N]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Final, Self

import orjson

from local.http_server import LocalService

NOTIFY_PATH: Final = "/notify"
MIN_INTERVAL_SECONDS: Final = 30.0
DAILY_LIMIT: Final = 100
DAY_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Shown:
    """A notification a user saw."""

    token: str
    notification_id: str
    title: str
    body: str
    target_url: str


type _Answer = tuple[int, dict[str, Any]]


class NotificationClientStub(LocalService):
    """The stub server: ``with NotificationClientStub() as stub: …stub.url…``. ``clock`` is a seam for tests."""

    name = "notification-client-stub"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(host=host, port=port)
        self.clock = clock
        self.invalid_tokens: set[str] = set()
        self.rate_limited_tokens: set[str] = set()
        self.shown: list[Shown] = []
        self.requests: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str]] = set()
        self._sends: dict[str, list[float]] = {}
        self._failures: list[int] = []
        self._lock = threading.Lock()

    # -- control -------------------------------------------------------------------------------------
    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status``."""
        with self._lock:
            self._failures.extend([status] * count)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the per-token limits (every recorded send moves that far into the past)."""
        with self._lock:
            self._sends = {token: [at - seconds for at in sends] for token, sends in self._sends.items()}

    def reset(self) -> Self:
        """Nothing recorded, nothing invalid or rate limited, no failure pending."""
        with self._lock:
            self.invalid_tokens.clear()
            self.rate_limited_tokens.clear()
            self.shown.clear()
            self.requests.clear()
            self._seen.clear()
            self._sends.clear()
            self._failures.clear()
        return self

    def shown_to(self, token: str) -> list[Shown]:
        """What ``token``'s user saw."""
        with self._lock:
            return [item for item in self.shown if item.token == token]

    # -- the endpoint --------------------------------------------------------------------------------
    def notify(self, request: object) -> _Answer:
        """Answer one ``POST /notify`` body (decoded JSON)."""
        with self._lock:
            self.requests.append(request if isinstance(request, dict) else {"invalid": True})
            if self._failures:
                return self._failures.pop(0), {"error": "injected failure"}
            problem = _problem(request)
            if problem is not None:
                return 400, {"error": problem}
            assert isinstance(request, dict)  # noqa: S101 - _problem checked it
            result: dict[str, list[str]] = {"successfulTokens": [], "invalidTokens": [], "rateLimitedTokens": []}
            for token in request["tokens"]:
                result[self._answer_token(token, request)].append(token)
            return 200, {"result": result}

    def _answer_token(self, token: str, request: dict[str, Any]) -> str:
        if token in self.invalid_tokens or token.startswith("invalid-"):
            return "invalidTokens"
        if token in self.rate_limited_tokens or token.startswith("ratelimited-"):
            return "rateLimitedTokens"
        key = (str(request["notificationId"]), token)
        if key in self._seen:
            return "successfulTokens"  # a repeat: clients deduplicate, the user sees it once
        now = self.clock()
        sends = [at for at in self._sends.get(token, []) if at > now - DAY_SECONDS]
        if (sends and now - sends[-1] < MIN_INTERVAL_SECONDS) or len(sends) >= DAILY_LIMIT:
            return "rateLimitedTokens"
        self._sends[token] = [*sends, now]
        self._seen.add(key)
        self.shown.append(Shown(token, key[0], str(request["title"]), str(request["body"]), str(request["targetUrl"])))
        return "successfulTokens"

    def control(self, command: object) -> _Answer:
        """``POST /control``: change which tokens are invalid or rate limited, inject failures."""
        if not isinstance(command, dict):
            return 400, {"error": "expected a JSON object"}
        with self._lock:
            self.invalid_tokens.update(str(token) for token in command.get("invalid", []))
            self.rate_limited_tokens.update(str(token) for token in command.get("rateLimited", []))
            self._failures.extend([int(command.get("status", 503))] * int(command.get("failNext", 0)))
        return 200, {"ok": True}

    def listing(self) -> _Answer:
        """``GET /notifications``: what users saw."""
        with self._lock:
            shown = [
                {
                    "token": s.token,
                    "notificationId": s.notification_id,
                    "title": s.title,
                    "body": s.body,
                    "targetUrl": s.target_url,
                }
                for s in self.shown
            ]
        return 200, {"notifications": shown, "requests": len(self.requests)}

    # -- server ----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if not self.running:
            raise RuntimeError("the stub is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The notification URL to give in ``notificationDetails``."""
        return self.base_url + NOTIFY_PATH

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: Mapping[str, Any]) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(*stub.listing()) if self.path == "/notifications" else self._reply(404, {"error": "no"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: object = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = None
                if self.path == NOTIFY_PATH:
                    self._reply(*stub.notify(body))
                elif self.path == "/control":
                    self._reply(*stub.control(body))
                elif self.path == "/reset":
                    stub.reset()
                    self._reply(200, {"ok": True})
                else:
                    self._reply(404, {"error": "no such path"})

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: read ``/notifications`` instead of an access log."""

        return Handler


def _problem(request: object) -> str | None:
    """What a Farcaster client would refuse in ``request`` (``None`` when it is valid)."""
    if not isinstance(request, dict):
        return "expected a JSON object"
    tokens, notification_id = request.get("tokens"), request.get("notificationId")
    title, body, target = request.get("title"), request.get("body"), request.get("targetUrl")
    checks = (
        (isinstance(notification_id, str) and 0 < len(notification_id) <= 128, "notificationId: 1-128 characters"),
        (isinstance(title, str) and len(title) <= 32, "title: at most 32 characters"),
        (isinstance(body, str) and len(body) <= 128, "body: at most 128 characters"),
        (
            isinstance(target, str) and target.startswith("https://") and len(target) <= 1024,
            "targetUrl: an https URL of at most 1024 characters",
        ),
        (
            isinstance(tokens, list) and len(tokens) <= 100 and all(isinstance(token, str) for token in tokens),
            "tokens: a list of at most 100 strings",
        ),
    )
    return next((problem for valid, problem in checks if not valid), None)


def main() -> None:
    """Run the stub in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="A local Farcaster notification-client stub.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    with NotificationClientStub(host=arguments.host, port=arguments.port) as stub:
        print(f"{stub.name}: notification URL {stub.url}; GET {stub.base_url}/notifications; Ctrl-C stops it")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":
    main()
