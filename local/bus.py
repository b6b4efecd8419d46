"""A local EventBridge bus: the PutEvents API over HTTP, the template's rules, delivery to functions.

The server speaks the ``AWSEvents.PutEvents`` JSON 1.1 protocol, so the publisher code that runs on
Lambda (a boto3 ``events`` client) works unchanged with ``endpoint_url`` pointing here; the request
signature is not checked. Each accepted entry becomes a full EventBridge event and is matched against
the rules of the bus it was sent to (``EventBridgeRule`` events of the template's functions); every
matching rule's function is invoked asynchronously by a small pool of worker threads. A failing
invocation is retried with exponential backoff up to the rule's ``RetryPolicy.MaximumRetryAttempts``
(``default_retry_attempts`` when the rule has none); then the event lands in ``dead_letters``
(also ``GET /dead-letters``), standing in for the SQS dead-letter queue; the server answers SQS
``GetQueueAttributes``, ``ReceiveMessage`` and ``DeleteMessage`` for that queue (``DEAD_LETTER_QUEUE``), so
the metrics endpoint reads its depth and the redrive function redrives it, as in AWS. ``drain()`` waits until every
accepted event has been delivered or dead-lettered, including events published by the consumers.

``matches_pattern`` implements EventBridge event patterns: nested objects, lists of allowed values
(an event array matches when any element does), ``prefix``, ``suffix``, ``equals-ignore-case``,
``anything-but`` (values, ``prefix``, ``suffix``, ``equals-ignore-case``), ``exists``, ``numeric``,
``cidr``, ``wildcard`` and ``$or``. As in EventBridge, the event is flattened first: arrays of objects
contribute the values of each field independently.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from local.http_server import BackgroundHttpServer
from local.invoker import LOCAL_ACCOUNT_ID, Invoker
from local.template import RuleSpec, Template

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
DEFAULT_BUS = "default"
JSON_11 = "application/x-amz-json-1.1"


# ---------------------------------------------------------------------------------------------------
# Event patterns
# ---------------------------------------------------------------------------------------------------


class PatternError(ValueError):
    """An event pattern EventBridge would reject."""


FieldPath = tuple[str, ...]
_OPERATORS = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "exists", "numeric", "cidr", "wildcard"}
)
_NUMERIC_OPERATORS = frozenset({"=", "<", "<=", ">", ">="})


def flatten_event(event: object, prefix: FieldPath = ()) -> dict[FieldPath, list[Any]]:
    """Every leaf of ``event`` by its path of keys; array elements add values to the same path."""
    leaves: dict[FieldPath, list[Any]] = {}

    def walk(value: object, path: FieldPath) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                walk(child, (*path, str(key)))
        elif isinstance(value, list):
            for element in value:
                walk(element, path)
        elif path:
            leaves.setdefault(path, []).append(value)

    walk(event, prefix)
    return leaves


def matches_pattern(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches the EventBridge event ``pattern``."""
    return _match_object(pattern, (), flatten_event(event))


def _match_object(pattern: Mapping[str, Any], path: FieldPath, leaves: Mapping[FieldPath, list[Any]]) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_match_object(alternative, path, leaves) for alternative in expected):
                return False
        elif isinstance(expected, Mapping):
            if not _match_object(expected, (*path, key), leaves):
                return False
        elif not _match_field(expected, leaves.get((*path, key))):
            return False
    return True


def _match_field(matchers: Iterable[Any], values: list[Any] | None) -> bool:
    for matcher in matchers:
        if isinstance(matcher, Mapping) and "exists" in matcher:
            if bool(matcher["exists"]) == (values is not None):
                return True
        elif values is not None and any(_match_value(matcher, value) for value in values):
            return True
    return False


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(expected: object, value: object) -> bool:
    """JSON equality: numbers by value, booleans never equal to numbers."""
    if _is_number(expected) and _is_number(value):
        return expected == value
    return type(expected) is type(value) and expected == value


def _match_value(matcher: object, value: object) -> bool:
    if not isinstance(matcher, Mapping):
        return _equal(matcher, value)
    ((operator, argument),) = matcher.items()
    if operator == "numeric":
        return _is_number(value) and _match_numeric(argument, cast("float", value))
    if operator == "cidr":
        return isinstance(value, str) and _match_cidr(argument, value)
    if operator == "anything-but":
        return _match_anything_but(argument, value)
    if not isinstance(value, str):
        return False
    return _match_string_operator(operator, argument, value)


def _match_string_operator(operator: str, argument: object, value: str) -> bool:
    if operator == "equals-ignore-case":
        return value.casefold() == str(argument).casefold()
    if operator in {"prefix", "suffix"}:
        ignore_case = isinstance(argument, Mapping)
        text = str(cast("Mapping[str, object]", argument)["equals-ignore-case"]) if ignore_case else str(argument)
        subject = value.casefold() if ignore_case else value
        needle = text.casefold() if ignore_case else text
        return subject.startswith(needle) if operator == "prefix" else subject.endswith(needle)
    if operator == "wildcard":
        return _wildcard_regex(str(argument)).fullmatch(value) is not None
    return False


def _match_anything_but(argument: object, value: object) -> bool:
    if isinstance(argument, Mapping):
        ((operator, inner),) = argument.items()
        if not isinstance(value, str):
            return False  # prefix, suffix and equals-ignore-case only ever apply to strings
        if operator == "equals-ignore-case" and isinstance(inner, list):
            return not any(_match_string_operator(operator, item, value) for item in inner)
        return not _match_string_operator(operator, inner, value)
    excluded = argument if isinstance(argument, list) else [argument]
    return not any(_equal(item, value) for item in excluded)


def _match_numeric(conditions: list[Any], value: float) -> bool:
    for index in range(0, len(conditions), 2):
        operator, bound = conditions[index], float(conditions[index + 1])
        ok = {
            "=": value == bound,
            "<": value < bound,
            "<=": value <= bound,
            ">": value > bound,
            ">=": value >= bound,
        }[operator]
        if not ok:
            return False
    return True


def _match_cidr(network: str, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(?<!\\)\*", pattern)
    return re.compile(".*".join(re.escape(part.replace("\\*", "*")) for part in parts), re.DOTALL)


def validate_pattern(pattern: object, path: str = "") -> None:
    """Raise ``PatternError`` for a pattern EventBridge would reject (leaves must be arrays, …)."""
    if not isinstance(pattern, Mapping) or (not pattern and not path):
        raise PatternError(f"{path or 'pattern'}: must be a non-empty JSON object")
    for key, expected in pattern.items():
        where = f"{path}.{key}" if path else str(key)
        if key == "$or":
            if not isinstance(expected, list) or len(expected) < 2:
                raise PatternError(f"{where}: $or takes a list of at least two patterns")
            for alternative in expected:
                validate_pattern(alternative, where)
        elif isinstance(expected, Mapping):
            validate_pattern(expected, where)
        elif isinstance(expected, list):
            if not expected:
                raise PatternError(f"{where}: an empty list matches nothing")
            for matcher in expected:
                _validate_matcher(matcher, where)
        else:
            raise PatternError(f"{where}: match values must be in a JSON array, got {expected!r}")


def _validate_matcher(matcher: object, where: str) -> None:
    if not isinstance(matcher, Mapping):
        if isinstance(matcher, list):
            raise PatternError(f"{where}: nested arrays are not allowed")
        return
    if len(matcher) != 1:
        raise PatternError(f"{where}: an operator object has exactly one key, got {list(matcher)}")
    ((operator, argument),) = matcher.items()
    if operator not in _OPERATORS:
        raise PatternError(f"{where}: unknown operator {operator!r}")
    if operator == "exists" and not isinstance(argument, bool):
        raise PatternError(f"{where}: exists takes true or false")
    if operator == "numeric":
        _validate_numeric(argument, where)
    if operator in {"prefix", "suffix"} and not (
        isinstance(argument, str) or (isinstance(argument, Mapping) and list(argument) == ["equals-ignore-case"])
    ):
        raise PatternError(f"{where}: {operator} takes a string or {{'equals-ignore-case': string}}")
    if operator in {"equals-ignore-case", "wildcard"} and not isinstance(argument, str):
        raise PatternError(f"{where}: {operator} takes a string")
    if operator == "cidr":
        try:
            ipaddress.ip_network(argument, strict=False)
        except (TypeError, ValueError) as error:
            raise PatternError(f"{where}: cidr takes an IP network: {error}") from error
    if operator == "anything-but":
        _validate_anything_but(argument, where)


def _validate_numeric(argument: object, where: str) -> None:
    if not isinstance(argument, list) or not argument or len(argument) % 2 or len(argument) > 4:
        raise PatternError(f"{where}: numeric takes [op, number] or [op, number, op, number]")
    for index in range(0, len(argument), 2):
        operator, bound = argument[index], argument[index + 1]
        if operator not in _NUMERIC_OPERATORS or not _is_number(bound) or not math.isfinite(bound):
            raise PatternError(f"{where}: bad numeric condition {operator!r} {bound!r}")


def _validate_anything_but(argument: object, where: str) -> None:
    if isinstance(argument, Mapping):
        if len(argument) != 1 or next(iter(argument)) not in {"prefix", "suffix", "equals-ignore-case"}:
            raise PatternError(f"{where}: anything-but takes a value, a list, prefix, suffix or equals-ignore-case")
    elif isinstance(argument, list) and any(isinstance(item, Mapping | list) for item in argument):
        raise PatternError(f"{where}: anything-but lists hold plain values")


# ---------------------------------------------------------------------------------------------------
# The bus
# ---------------------------------------------------------------------------------------------------


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event whose delivery to a rule's target failed every attempt."""

    rule: str
    function_id: str
    error: str
    attempts: int
    event: dict[str, Any]
    failed_at: str = field(default_factory=_iso_now)
    receipt: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Delivery:
    rule: RuleSpec
    event: dict[str, Any]


class PutEventsValidationError(ValueError):
    """The whole PutEvents request is invalid (EventBridge's ValidationException)."""


def _entry_time(value: object) -> str:
    if value is None:
        return _iso_now()
    if _is_number(value):
        return datetime.fromtimestamp(float(cast("float", value)), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class LocalEventBus:
    """The local EventBridge bus ``bus_name`` (plus the ``default`` bus) with the template's rules."""

    def __init__(
        self,
        template: Template,
        invoker: Invoker,
        *,
        bus_name: str = "such-market",
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = LOCAL_ACCOUNT_ID,
        region: str | None = None,
        default_retry_attempts: int = 2,
        retry_base_delay: float = 0.05,
        workers: int = 4,
        quiet: bool = False,
    ) -> None:
        for rule in template.rules:
            try:
                validate_pattern(rule.pattern)
            except PatternError as error:
                raise PatternError(f"rule {rule.name}: {error}") from error
        self.template = template
        self.invoker = invoker
        self.bus_name = bus_name
        self.account_id = account_id
        self.region = region or invoker.region
        self.default_retry_attempts = default_retry_attempts
        self.retry_base_delay = retry_base_delay
        self.quiet = quiet
        self._host = host
        self._requested_port = port
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._pending = 0
        self._pending_changed = threading.Condition()
        self._dead_letters: list[DeadLetter] = []
        self._hidden: dict[str, float] = {}  # receipt → when a reader's hold ends
        self._dead_lock = threading.Lock()
        self._worker_count = workers
        self._workers: list[threading.Thread] = []
        self._server: BackgroundHttpServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalEventBus:
        self._server = BackgroundHttpServer(
            self._host, self._requested_port, _handler_class(self), name="local-bus-http"
        )
        for index in range(self._worker_count):
            worker = threading.Thread(target=self._work, name=f"local-bus-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=5)
        self._workers.clear()

    def __enter__(self) -> LocalEventBus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the bus is not started")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def dead_letters(self) -> list[DeadLetter]:
        with self._dead_lock:
            return list(self._dead_letters)

    def receive_dead_letters(self, max_messages: int, visibility_timeout_seconds: float) -> list[DeadLetter]:
        """Like SQS ``ReceiveMessage``: up to ``max_messages`` visible dead letters, hidden for a while."""
        now = time.monotonic()
        with self._dead_lock:
            visible = [dead for dead in self._dead_letters if self._hidden.get(dead.receipt, 0.0) <= now]
            for dead in visible[:max_messages]:
                self._hidden[dead.receipt] = now + visibility_timeout_seconds
            return visible[:max_messages]

    def hidden_dead_letters(self) -> int:
        """How many dead letters a reader holds (SQS's messages not visible)."""
        now = time.monotonic()
        with self._dead_lock:
            return sum(self._hidden.get(dead.receipt, 0.0) > now for dead in self._dead_letters)

    def delete_dead_letter(self, receipt: str) -> None:
        """Like SQS ``DeleteMessage``."""
        with self._dead_lock:
            self._dead_letters = [dead for dead in self._dead_letters if dead.receipt != receipt]
            self._hidden.pop(receipt, None)

    def rules_of(self, bus_name: str) -> list[RuleSpec]:
        return [rule for rule in self.template.rules if rule.event_bus_name == bus_name]

    # --- PutEvents -------------------------------------------------------------------------------

    def put_events(self, entries: object) -> dict[str, Any]:
        """The PutEvents operation: validates, accepts and schedules delivery; returns its response."""
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            count = len(entries) if isinstance(entries, list) else 0
            raise PutEventsValidationError(
                f"1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                f"Member must have length between 1 and {MAX_ENTRIES} (got {count})"
            )
        if len(json.dumps(entries).encode()) > MAX_REQUEST_BYTES:
            raise PutEventsValidationError("Total size of the entries in the request is over the limit.")
        results: list[dict[str, str]] = []
        failed = 0
        for entry in entries:
            event, error = self._accept(entry)
            if event is None:
                failed += 1
                results.append(error)
                continue
            results.append({"EventId": event["id"]})
            self._route(event, self._target_bus(entry))
        return {"FailedEntryCount": failed, "Entries": results}

    def publish(self, source: str, detail_type: str, detail: Mapping[str, Any], *, bus_name: str | None = None) -> str:
        """Put one event directly (without HTTP); returns its id."""
        entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(dict(detail))}
        entry["EventBusName"] = bus_name or self.bus_name
        response = self.put_events([entry])
        result = response["Entries"][0]
        if "EventId" not in result:
            raise ValueError(f"{result['ErrorCode']}: {result['ErrorMessage']}")
        return str(result["EventId"])

    def _target_bus(self, entry: Mapping[str, Any]) -> str:
        name = entry.get("EventBusName")
        if not name:
            return DEFAULT_BUS
        text = str(name)
        return text.rsplit("event-bus/", 1)[-1] if text.startswith("arn:") else text

    def _accept(self, entry: object) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """The event an entry becomes, or None and the per-entry error EventBridge would report."""
        if not isinstance(entry, Mapping):
            return None, _entry_error("InvalidArgument", "Entry is not a JSON object.")
        bus = self._target_bus(entry)
        if bus not in {self.bus_name, DEFAULT_BUS}:
            return None, _entry_error("ResourceNotFoundException", f"Event bus {bus} does not exist.")
        missing = [name for name in ("Source", "DetailType", "Detail") if not entry.get(name)]
        if missing:
            message = f"Parameter(s) {', '.join(missing)} could not be empty."
            return None, _entry_error("InvalidArgument", message)
        detail = _parse_detail(entry["Detail"])
        if detail is None:
            return None, _entry_error("MalformedDetail", "Detail is malformed: it must be a JSON object.")
        resources = entry.get("Resources") or []
        if not isinstance(resources, list):
            return None, _entry_error("InvalidArgument", "Parameter Resources is not valid.")
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": str(entry["DetailType"]),
            "source": str(entry["Source"]),
            "account": self.account_id,
            "time": _entry_time(entry.get("Time")),
            "region": self.region,
            "resources": [str(resource) for resource in resources],
            "detail": detail,
        }
        return event, {}

    def _route(self, event: dict[str, Any], bus_name: str) -> None:
        rules = [rule for rule in self.rules_of(bus_name) if matches_pattern(rule.pattern, event)]
        if not rules:
            self._log(f"{event['source']} {event['detail-type']} {event['id']}: no matching rule")
        for rule in rules:
            with self._pending_changed:
                self._pending += 1
            self._queue.put(_Delivery(rule=rule, event=event))

    # --- delivery --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            finally:
                with self._pending_changed:
                    self._pending -= 1
                    self._pending_changed.notify_all()

    def _deliver(self, delivery: _Delivery) -> None:
        rule, event = delivery.rule, delivery.event
        retries = rule.retry_attempts if rule.retry_attempts is not None else self.default_retry_attempts
        payload: object = event if rule.input is None else _parse_input(rule.input)
        error_text = ""
        for attempt in range(1, retries + 2):
            started = time.monotonic()
            try:
                self.invoker.invoke(rule.function_id, payload)
            except Exception as error:  # any failure of the target is retried
                error_text = f"{type(error).__name__}: {error}"
                self._log(
                    f"{event['detail-type']} {event['id']} → {rule.function_id} attempt {attempt} failed: "
                    f"{error_text}\n{''.join(traceback.format_exception(error)).rstrip()}"
                )
                if attempt <= retries:
                    time.sleep(self.retry_base_delay * 2 ** (attempt - 1))
                continue
            elapsed = (time.monotonic() - started) * 1000
            self._log(f"{event['detail-type']} {event['id']} → {rule.function_id} ok {elapsed:.0f}ms")
            return
        dead = DeadLetter(
            rule=rule.name, function_id=rule.function_id, error=error_text, attempts=retries + 1, event=event
        )
        with self._dead_lock:
            self._dead_letters.append(dead)
        self._log(
            f"{event['detail-type']} {event['id']} → {rule.function_id} dead-lettered after {retries + 1} attempts"
        )

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted event is delivered or dead-lettered; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._pending_changed:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._pending_changed.wait(remaining)
        return True

    def _log(self, message: str) -> None:
        if not self.quiet:
            print(f"[bus] {message}", file=sys.stderr, flush=True)


def _entry_error(code: str, message: str) -> dict[str, str]:
    return {"ErrorCode": code, "ErrorMessage": message}


def _parse_detail(raw: object) -> dict[str, Any] | None:
    try:
        detail = json.loads(str(raw))
    except ValueError:
        return None
    return detail if isinstance(detail, dict) else None


def _parse_input(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


DEAD_LETTER_QUEUE = "such-market-events-dlq"
"""The name under which the bus answers SQS ``GetQueueAttributes`` for its dead letters (metrics)."""


def _handler_class(bus: LocalEventBus) -> type[BaseHTTPRequestHandler]:
    class BusRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "such-market-local-bus"

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # one line per delivery is logged by the bus itself

        def _send(self, status: int, body: object, content_type: str = JSON_11) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, error_type: str, message: str) -> None:
            self._send(status, {"__type": error_type, "message": message})

        def _dead_letter_queue(self, action: str, raw: bytes) -> None:
            """SQS (JSON 1.0) on the dead letters: ``GetQueueAttributes``, ``ReceiveMessage``, ``DeleteMessage``."""
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict):
                request = {}
            queue = str(request.get("QueueUrl", ""))
            if not queue.rstrip("/").endswith("/" + DEAD_LETTER_QUEUE):
                self._error(HTTPStatus.BAD_REQUEST, "QueueDoesNotExist", f"no such queue: {queue!r}")
                return
            answer: dict[str, Any] = {}
            if action == "GetQueueAttributes":
                letters = bus.dead_letters
                hidden = bus.hidden_dead_letters()
                answer = {
                    "Attributes": {
                        "ApproximateNumberOfMessages": str(len(letters) - hidden),
                        "ApproximateNumberOfMessagesNotVisible": str(hidden),
                    }
                }
            elif action == "ReceiveMessage":
                taken = bus.receive_dead_letters(
                    int(request.get("MaxNumberOfMessages", 1)), float(request.get("VisibilityTimeout", 30))
                )
                answer = {
                    "Messages": [
                        {
                            "MessageId": dead.receipt,
                            "ReceiptHandle": dead.receipt,
                            "Body": json.dumps(dead.event),
                            "MD5OfBody": hashlib.md5(
                                json.dumps(dead.event).encode(), usedforsecurity=False
                            ).hexdigest(),
                        }
                        for dead in taken
                    ]
                }
            else:
                bus.delete_dead_letter(str(request.get("ReceiptHandle", "")))
            self._send(HTTPStatus.OK, answer, "application/x-amz-json-1.0")

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/dead-letters":
                self._send(HTTPStatus.OK, [dead.to_json() for dead in bus.dead_letters], "application/json")
            else:
                self._send(HTTPStatus.NOT_FOUND, {"message": "Not Found"}, "application/json")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            target = self.headers.get("X-Amz-Target", "")
            if target in {"AmazonSQS.GetQueueAttributes", "AmazonSQS.ReceiveMessage", "AmazonSQS.DeleteMessage"}:
                self._dead_letter_queue(target.removeprefix("AmazonSQS."), raw)
                return
            if target != "AWSEvents.PutEvents":
                self._error(HTTPStatus.BAD_REQUEST, "UnknownOperationException", f"unsupported: {target!r}")
                return
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, "SerializationException", "request body is not JSON")
                return
            entries = request.get("Entries") if isinstance(request, dict) else None
            try:
                response = bus.put_events(entries)
            except PutEventsValidationError as error:
                self._error(HTTPStatus.BAD_REQUEST, "ValidationException", str(error))
                return
            self._send(HTTPStatus.OK, response)

    return BusRequestHandler
