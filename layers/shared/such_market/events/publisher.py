"""``PutEvents`` to the bus: batches of at most 10 entries, bounded retries of the failed entries only.

Contract of ``EventPublisher.publish``: it never raises because EventBridge refused or could not be
reached. It returns a ``PublishResult`` naming the ``eventId``s that were accepted and, for the others,
the last error; ``PublishResult.raise_for_failures()`` turns failures into an ``EventPublishError``
for callers that want an exception. Callers that publish from the outbox keep failed events there
for the relay, so an event is never lost.

A partial failure (``FailedEntryCount`` > 0) is retried for the failed entries only, up to
``max_attempts`` in all, with full-jitter exponential backoff, and never past the caller's deadline.
The boto3 client is created once per container (per endpoint) on first use, with short connect/read
timeouts and few SDK-level retries, so a slow EventBridge costs a request seconds, not minutes.
Locally ``EVENTBRIDGE_ENDPOINT_URL`` points the client at the local bus.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from such_market.backoff import exponential_ceiling
from such_market.config import EventSettings
from such_market.container import per_container
from such_market.errors import EventPublishError
from such_market.events.wire import PublishableEvent, put_events_entry

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

MAX_ENTRIES_PER_CALL: Final = 10
MAX_BYTES_PER_CALL: Final = 256 * 1024
"""EventBridge's limits for one ``PutEvents`` request (and for one entry)."""

CONNECT_TIMEOUT_SECONDS: Final = 1.0
READ_TIMEOUT_SECONDS: Final = 2.0
SDK_MAX_ATTEMPTS: Final = 2
DEFAULT_MAX_ATTEMPTS: Final = 3
BACKOFF_BASE_SECONDS: Final = 0.1
BACKOFF_CAP_SECONDS: Final = 1.0


@per_container(close=lambda client: client.close())
def get_events_client(settings: EventSettings) -> EventBridgeClient:
    """The container's EventBridge client for ``settings`` (created once)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": SDK_MAX_ATTEMPTS, "mode": "standard"},
    )
    return boto3.client("events", endpoint_url=settings.eventbridge_endpoint_url, config=config)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What one ``publish`` call achieved: accepted ``eventId``s, and the last error of each failed one."""

    published: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        """True when every event was accepted."""
        return not self.failed

    def raise_for_failures(self) -> None:
        """Raise ``EventPublishError`` naming the failed events, if any."""
        if self.failed:
            sample = ", ".join(f"{event_id} ({error})" for event_id, error in list(self.failed.items())[:3])
            raise EventPublishError(f"{len(self.failed)} event(s) not published: {sample}")


def _entry_size(entry: PutEventsRequestEntryTypeDef) -> int:
    # EventBridge's own accounting: detail, detail-type, source, resources, plus 14 bytes for Time.
    return (
        len(entry.get("Detail", "").encode())
        + len(entry.get("DetailType", "").encode())
        + len(entry.get("Source", "").encode())
        + sum(len(resource.encode()) for resource in entry.get("Resources", []))
        + 14
    )


def _batches(
    entries: Sequence[tuple[str, PutEventsRequestEntryTypeDef]],
) -> Iterator[list[tuple[str, PutEventsRequestEntryTypeDef]]]:
    batch: list[tuple[str, PutEventsRequestEntryTypeDef]] = []
    size = 0
    for item in entries:
        item_size = _entry_size(item[1])
        if batch and (len(batch) == MAX_ENTRIES_PER_CALL or size + item_size > MAX_BYTES_PER_CALL):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff before retry number ``attempt``."""
    ceiling = exponential_ceiling(attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS)
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography


class EventPublisher:
    """Publishes events (``models.Event``, ``wire.WireEvent``) to the bus; the module docstring has the contract."""

    def __init__(
        self,
        settings: EventSettings,
        *,
        client: EventBridgeClient | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._settings = settings
        self._client = client
        self._max_attempts = max_attempts
        self._sleep = sleep

    @property
    def client(self) -> EventBridgeClient:
        """The injected client, or the container's client (created on first use)."""
        return self._client if self._client is not None else get_events_client(self._settings)

    def publish(self, events: Sequence[PublishableEvent], *, deadline: float | None = None) -> PublishResult:
        """Publish ``events``; retry failed entries until ``max_attempts`` or ``deadline`` (monotonic).

        Never raises for EventBridge errors: see ``PublishResult``.
        """
        published: list[str] = []
        failed: dict[str, str] = {}
        pending: list[tuple[str, PutEventsRequestEntryTypeDef]] = []
        for event in events:
            entry = put_events_entry(event, self._settings.event_bus_name, self._settings.event_source)
            if _entry_size(entry) > MAX_BYTES_PER_CALL:
                failed[event.event_id] = "EntryTooLarge: the event exceeds 256 KiB"
            else:
                pending.append((event.event_id, entry))
        errors: dict[str, str] = {}
        for attempt in range(1, self._max_attempts + 1):
            errors = self._put(pending, published)
            pending = [item for item in pending if item[0] in errors]
            if not pending or attempt == self._max_attempts:
                break
            delay = _backoff(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                break
            self._sleep(delay)
        failed.update(errors)
        return PublishResult(published=tuple(published), failed=MappingProxyType(failed))

    def _put(self, entries: Sequence[tuple[str, PutEventsRequestEntryTypeDef]], published: list[str]) -> dict[str, str]:
        """Send ``entries`` in batches; append accepted ids to ``published``, return errors by id."""
        from botocore.exceptions import BotoCoreError, ClientError

        errors: dict[str, str] = {}
        for batch in _batches(entries):
            try:
                response = self.client.put_events(Entries=[entry for _, entry in batch])
            except ClientError as error:
                error_code = error.response.get("Error", {}).get("Code", "ClientError")
                errors.update((event_id, error_code) for event_id, _ in batch)
                continue
            except BotoCoreError as error:
                errors.update((event_id, type(error).__name__) for event_id, _ in batch)
                continue
            # Result entries come in request order: an ErrorCode marks a failed entry, an EventId success.
            for (event_id, _), result in zip(batch, response["Entries"], strict=True):
                code = result.get("ErrorCode")
                if code:
                    message = result.get("ErrorMessage")
                    errors[event_id] = f"{code}: {message}" if message else code
                else:
                    published.append(event_id)
        return errors


@per_container()
def get_publisher(settings: EventSettings) -> EventPublisher:
    """The container's publisher for ``settings`` (its boto3 client is made on first publish)."""
    return EventPublisher(settings)
