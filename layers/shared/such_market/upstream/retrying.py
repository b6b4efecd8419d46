"""Bounded, jittered retries of JSON requests to an upstream API (SPEC §7), for every upstream client.

``RetryingRequester.get(method, params)`` sends one GET, ``RetryingRequester.post(method, body, path=…)``
one POST of a JSON body (only for calls the upstream deduplicates, e.g. by a notification id, since a
timed-out POST is sent again), through the client's ``httpx.Client``; each returns the decoded JSON
object, or raises one of the ``UpstreamError`` tree (``such_market.upstream.errors`` documents it):

- 429 waits ``Retry-After`` (seconds or an HTTP date) plus full-jitter backoff; 5xx, timeouts and
  connection errors retry with full-jitter backoff; both are bounded by ``max_attempts`` and by a time
  budget per call (a wait that would end beyond the budget fails at once, carrying ``Retry-After``);
- both the budget and each attempt's timeouts are cut to the invocation's deadline (``such_market.deadline``),
  and no attempt starts without time left, so a function answers before Lambda's timeout;
- a ``CallGate`` (``such_market.upstream.gate``) passed with a call bounds how many calls of a job run at
  once: each attempt holds one of its slots, and a 429 halves its limit and pauses the job's other calls;
- 404 raises ``UpstreamNotFound``, any other 4xx ``UpstreamBadRequest`` at once (retrying cannot help);
- a 2xx whose body is not a JSON object raises ``UpstreamProtocolError``;
- error details are read from ``{"error":{"message"}}``, ``{"error":"…"}``, ``{"message":"…"}`` or plain
  text, with every secret the client names replaced by ``***``, and cut short; httpx exceptions are
  never chained, so no URL or header reaches a traceback.

Retry warnings name the upstream, the method, the status and the error detail (redacted; never a URL, a
header or a key). A 401/403 means the upstream refuses our key: it is logged as an error naming the
upstream and the status, and raised at once as ``UpstreamCredentialsRejected``.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Self
from urllib.parse import quote

import httpx
import orjson

from such_market import deadline
from such_market.backoff import exponential_ceiling
from such_market.observability import logger
from such_market.upstream.errors import (
    UpstreamBadRequest,
    UpstreamCredentialsRejected,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
    parse_retry_after,
)
from such_market.upstream.gate import CallGate

REDACTED: Final = "***"
MIN_ATTEMPT_SECONDS: Final = 0.05
"""Below this much time before the invocation's deadline no attempt is started."""
MAX_DETAIL_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries: attempts, total time, and the full-jitter backoff curve."""

    max_attempts: int = 4
    budget_seconds: float = 20.0
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 4.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget_seconds <= 0:
            raise ValueError("budget_seconds must be positive")

    def backoff(self, attempt: int, jitter: float) -> float:
        """Full jitter: ``jitter`` (uniform in [0, 1)) times min(cap, base * 2**(attempt-1))."""
        return jitter * exponential_ceiling(attempt, base=self.backoff_base_seconds, cap=self.backoff_cap_seconds)


@dataclass(frozen=True, slots=True)
class _Retry:
    """A retryable failure and how long to wait before the next attempt."""

    failure: UpstreamUnavailable
    delay: float


class RetryingRequester:
    """GETs (and POSTs) JSON objects from one upstream with a ``RetryPolicy``.

    ``sleep``, ``clock`` (monotonic seconds), ``now`` (wall clock, for HTTP-date ``Retry-After``) and
    ``jitter`` (uniform in [0, 1)) are seams for tests.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        upstream: str,
        policy: RetryPolicy,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self.upstream = upstream
        self.policy = policy
        self._secrets = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
        self._sleep = sleep
        self._clock = clock
        self._now = now or (lambda: datetime.now(UTC))
        self._jitter = jitter

    def get(
        self, method: str, params: Sequence[tuple[str, str]], *, path: str | None = None, gate: CallGate | None = None
    ) -> dict[str, Any]:
        """GET ``path`` (default: ``method``, relative to the client's base URL) with bounded retries.

        ``method`` names the call in errors and logs; ``gate`` is the job's shared concurrency gate, if any.
        """
        return self._with_retries(
            method, lambda timeout: self._http.get(path or method, params=list(params), timeout=timeout), gate=gate
        )

    def post(self, method: str, body: Mapping[str, Any], *, path: str) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path`` (absolute, or relative to the base URL) with bounded retries.

        Retrying sends the same body again: use it only where the upstream deduplicates repeats.
        """
        content = orjson.dumps(body)
        headers = {"content-type": "application/json"}
        return self._with_retries(
            method, lambda timeout: self._http.post(path, content=content, headers=headers, timeout=timeout)
        )

    def _with_retries(
        self, method: str, send: Callable[[httpx.Timeout], httpx.Response], *, gate: CallGate | None = None
    ) -> dict[str, Any]:
        ends = self._clock() + deadline.bounded(self.policy.budget_seconds)
        attempt = 0
        while True:
            attempt += 1
            timeout = self._attempt_timeout()
            if timeout is None:
                raise UpstreamUnavailable(method, "no time left before the request's deadline", upstream=self.upstream)
            outcome = self._gated_attempt(method, functools.partial(send, timeout), attempt, gate)
            if not isinstance(outcome, _Retry):
                return outcome
            if gate is not None and isinstance(outcome.failure, UpstreamRateLimited):
                gate.rate_limited(outcome.delay)
            if attempt >= self.policy.max_attempts or self._clock() + outcome.delay > ends:
                raise outcome.failure
            logger.warning(
                "upstream call failed; retrying",
                extra={
                    "upstream": self.upstream.lower(),
                    "method": method,
                    "attempt": attempt,
                    "status": outcome.failure.status,
                    "error": outcome.failure.detail,
                    "delay_seconds": round(outcome.delay, 3),
                },
            )
            self._sleep(outcome.delay)

    def _gated_attempt(
        self, method: str, send: Callable[[], httpx.Response], attempt: int, gate: CallGate | None
    ) -> dict[str, Any] | _Retry:
        """``_attempt`` holding one of ``gate``'s slots (when there is a gate)."""
        if gate is None:
            return self._attempt(method, send, attempt)
        gate.acquire()
        succeeded = False
        try:
            outcome = self._attempt(method, send, attempt)
            succeeded = not isinstance(outcome, _Retry)
            return outcome
        finally:
            gate.release(succeeded=succeeded)

    def _attempt_timeout(self) -> httpx.Timeout | None:
        """The client's timeouts, shortened to the invocation's deadline; ``None`` when no time is left."""
        configured = self._http.timeout
        left = deadline.remaining()
        if left is None:
            return configured
        if left < MIN_ATTEMPT_SECONDS:
            return None

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=cap(configured.connect),
            read=cap(configured.read),
            write=cap(configured.write),
            pool=cap(configured.pool),
        )

    def gate(self, maximum: int) -> CallGate:
        """A new ``CallGate`` of ``maximum`` calls that waits with this requester's ``sleep`` and ``clock``."""
        return CallGate(maximum, sleep=self._sleep, clock=self._clock)

    def redact(self, text: str) -> str:
        """``text`` with every secret of this upstream replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _attempt(self, method: str, send: Callable[[], httpx.Response], attempt: int) -> dict[str, Any] | _Retry:
        """One request: the JSON object, a ``_Retry`` for retryable failures, or a raised final error."""
        upstream = self.upstream
        try:
            response = send()
        except httpx.TimeoutException as error:
            failure = UpstreamUnavailable(method, f"timed out ({type(error).__name__})", upstream=upstream)
            return _Retry(failure, self._backoff(attempt))
        except httpx.TransportError as error:
            failure = UpstreamUnavailable(method, f"transport error ({type(error).__name__})", upstream=upstream)
            return _Retry(failure, self._backoff(attempt))
        status = response.status_code
        if 200 <= status < 300:
            return self._decode(method, response)
        detail = self._error_detail(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._now())
            failure = UpstreamRateLimited(method, detail, retry_after=retry_after, upstream=upstream)
            return _Retry(failure, (retry_after or 0.0) + self._backoff(attempt))
        if status >= 500:
            return _Retry(UpstreamUnavailable(method, detail, status=status, upstream=upstream), self._backoff(attempt))
        if status == 404:
            raise UpstreamNotFound(method, detail, status=status, upstream=upstream)
        if status in {401, 403}:
            logger.error(
                "upstream refused our credentials; check its API key",
                extra={"upstream": upstream.lower(), "method": method, "status": status, "error": detail},
            )
            raise UpstreamCredentialsRejected(method, detail, status=status, upstream=upstream)
        if 400 <= status < 500:
            raise UpstreamBadRequest(method, detail, status=status, upstream=upstream)
        raise UpstreamProtocolError(method, "unexpected status", status=status, upstream=upstream)

    def _backoff(self, attempt: int) -> float:
        return self.policy.backoff(attempt, self._jitter())

    def _decode(self, method: str, response: httpx.Response) -> dict[str, Any]:
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                method, "the body is not JSON", status=response.status_code, upstream=self.upstream
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamProtocolError(
                method, "the body is not a JSON object", status=response.status_code, upstream=self.upstream
            )
        return payload

    def _error_detail(self, response: httpx.Response) -> str:
        text = response.text.strip()
        message: object = text
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                message = error.get("message", text)
            elif isinstance(error, str):
                message = error
            elif isinstance(body.get("message"), str):
                message = body["message"]
        detail = " ".join(str(message).split()) or response.reason_phrase or "no detail"
        return self.redact(detail)[:MAX_DETAIL_CHARS]


class JsonUpstream:
    """The base of every upstream client: one ``httpx.Client`` with explicit timeouts, JSON headers and
    no redirects, and a ``RetryingRequester`` over it. Thread-safe; create once per container."""

    def __init__(
        self,
        *,
        upstream: str,
        base_url: str,
        transport: httpx.BaseTransport,
        secrets: Iterable[str],
        policy: RetryPolicy,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(
                connect=connect_timeout_seconds,
                read=read_timeout_seconds,
                write=read_timeout_seconds,
                pool=connect_timeout_seconds,
            ),
            headers={"accept": "application/json", "user-agent": "such-market-backend"},
            follow_redirects=False,
        )
        self._requester = RetryingRequester(
            self._http,
            upstream=upstream,
            policy=policy,
            secrets=secrets,
            sleep=sleep,
            clock=clock,
            now=now,
            jitter=jitter,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
