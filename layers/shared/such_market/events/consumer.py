"""The base of EventBridge-triggered functions: parse, validate, and handle each ``eventId`` once.

Usage in a handler module::

    consumer = EventConsumer("invalidator", settings_model=InvalidatorSettings)

    @consumer.on(NftTransferred)
    def _transfer(detail: NftTransferred) -> None: ...

    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
        return consumer.handle(event, context)

What it promises:

- The event's ``detail-type`` selects the model (``such_market.events.models``); an unknown or
  unhandled detail type, or a detail that fails its schema, raises ``InvalidEventError`` so the
  delivery fails and, after EventBridge's retries, lands in the dead-letter queue. A handler registered
  with ``on_wire`` gets its detail read by its own parser instead (which raises the same error): for a
  consumer whose cold start must not pay for pydantic and the bus's models (about 0.1 s); the models are
  then imported only for a detail type it does not handle, to say so.
- Powertools idempotency keyed on ``detail.eventId`` runs the handler once per event for 24 hours, so
  the outbox's at-least-once re-publishing and EventBridge's own retries are harmless. A repeat
  returns the first run's result; a repeat while the first run is still going raises
  (``IdempotencyAlreadyInProgressError``) and is retried; a handler that raises leaves no record.
- Records live in Redis under ``<CACHE_PREFIX>:durable:idempotency:<name>#<hash>``: the durable
  namespace, which no cache clear touches. ``name`` is a stable logical name (not the deployed
  function name, which changes with the stack), so records survive redeploys.
- Nothing connects at import: settings are read and the persistence layer is built on the first
  event, and rebuilt only if the container's cache client changes.

A consumer whose effect is idempotent by itself (the invalidator: deleting keys twice deletes nothing
more) passes ``idempotent=False``: it then needs no record, and does not fail because the cache that
holds the records is down.

Handlers must return a JSON-serializable value (or ``None``): it is stored as the event's result.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from such_market import deadline
from such_market.analytics.recorder import Recorder, recorder_for
from such_market.cache.client import get_client
from such_market.config import CacheSettings, FunctionSettings, load_settings
from such_market.errors import InvalidEventError
from such_market.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.cache import CacheClientProtocol
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from such_market.cache.client import CacheClient
    from such_market.events.models import EventDetail

type HandlerResult = bool | int | float | str | list[Any] | dict[str, Any] | None

IDEMPOTENCY_TTL_SECONDS: Final = 24 * 60 * 60
IDEMPOTENCY_KEY_JMESPATH: Final = "detail.eventId"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def idempotency_key_prefix(cache_prefix: str, name: str) -> str:
    """The durable-namespace prefix of the idempotency records of consumer ``name``."""
    return f"{cache_prefix}:durable:idempotency:{name}"


def _run_handler(*, event: Mapping[str, Any], detail: object, handler: Callable[[Any], HandlerResult]) -> HandlerResult:
    # ``event`` is only the idempotency payload (its detail.eventId is the key); the handler gets the detail.
    return handler(detail)


def _log_repeat(response: Any, idempotent_data: DataRecord) -> Any:  # noqa: ANN401 - Powertools' hook
    logger.info("event already handled; returning its stored result", extra={"key": idempotent_data.idempotency_key})
    return response


class EventConsumer:
    """Dispatches EventBridge events to per-detail-type handlers, once per ``eventId``."""

    def __init__(self, name: str, *, settings_model: type[FunctionSettings], idempotent: bool = True) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError("name must be 1-64 characters of a-z, 0-9, '-' and '_'")
        self.name = name
        self.idempotent = idempotent
        self._settings_model = settings_model
        self._handlers: dict[str, Callable[[Any], HandlerResult]] = {}
        self._wire_parsers: dict[str, Callable[[Mapping[str, Any]], object]] = {}
        self._built: tuple[CacheClient, IdempotencyConfig, Callable[..., HandlerResult]] | None = None

    def on[D: EventDetail, R: HandlerResult](self, model: type[D]) -> Callable[[Callable[[D], R]], Callable[[D], R]]:
        """Register the decorated function as the handler of ``model``'s detail type."""
        from such_market.events.models import DETAIL_TYPES

        detail_type = model.DETAIL_TYPE
        if DETAIL_TYPES.get(detail_type) is not model:
            raise ValueError(f"{model.__name__} is not a registered event model")
        return self._register(detail_type, None)

    def on_wire[T, R: HandlerResult](
        self, detail_type: str, parse: Callable[[Mapping[str, Any]], T]
    ) -> Callable[[Callable[[T], R]], Callable[[T], R]]:
        """Register the decorated function as the handler of ``detail_type``, whose detail ``parse`` reads
        (raising ``InvalidEventError`` for anything the model would refuse) without the models."""
        return self._register(detail_type, parse)

    def _register[T, R: HandlerResult](
        self, detail_type: str, parse: Callable[[Mapping[str, Any]], T] | None
    ) -> Callable[[Callable[[T], R]], Callable[[T], R]]:
        if detail_type in self._handlers:
            raise ValueError(f"{detail_type} already has a handler in {self.name}")

        def register(handler: Callable[[T], R]) -> Callable[[T], R]:
            self._handlers[detail_type] = handler
            if parse is not None:
                self._wire_parsers[detail_type] = parse
            return handler

        return register

    def handle(self, event: Mapping[str, Any], context: LambdaContext) -> HandlerResult:
        """Validate ``event`` and run its handler unless this ``eventId`` was handled already; the outcome
        (processed, or failed: invalid or raised) is counted in the cache analytics."""
        recorder = self._recorder()
        try:
            with deadline.invocation(context):
                result = self._handle(event, context)
        except BaseException:
            if recorder is not None:
                recorder.count_event(self.name, "failed")
                recorder.flush()
            raise
        if recorder is not None:
            recorder.count_event(self.name, "processed")
            recorder.flush()
        return result

    def _handle(self, event: Mapping[str, Any], context: LambdaContext) -> HandlerResult:
        detail_type, detail = self._parse(event)
        handler = self._handlers[detail_type]
        if not self.idempotent:
            return _run_handler(event=event, detail=detail, handler=handler)
        config, process = self._idempotent()
        config.register_lambda_context(context)
        return process(event=event, detail=detail, handler=handler)

    def _parse(self, event: Mapping[str, Any]) -> tuple[str, object]:
        """The event's detail type (one this consumer handles) and its detail as its handler takes it."""
        detail_type, detail = event.get("detail-type"), event.get("detail")
        parse = self._wire_parsers.get(detail_type) if isinstance(detail_type, str) else None
        if parse is not None:
            if not isinstance(detail, Mapping):
                raise InvalidEventError(f"the {detail_type} detail is not a JSON object")
            return str(detail_type), parse(detail)
        from such_market.events.models import Event

        parsed = Event.from_eventbridge(event)
        if parsed.detail_type not in self._handlers:
            raise InvalidEventError(f"{self.name} does not handle {parsed.detail_type} events")
        return parsed.detail_type, parsed.detail

    def _recorder(self) -> Recorder | None:
        """The analytics recorder of this consumer's cache (events processed and failed), if analytics are on."""
        settings = load_settings(self._settings_model).part(CacheSettings)
        return recorder_for(settings) if settings.cache_analytics else None

    def _idempotent(self) -> tuple[IdempotencyConfig, Callable[..., HandlerResult]]:
        """The idempotent runner, built on first use for the container's cache client."""
        settings = load_settings(self._settings_model).part(CacheSettings)
        client = get_client(settings)
        if self._built is None or self._built[0] is not client:
            from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
            from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer

            with warnings.catch_warnings():
                # Powertools 3.x flags its Redis class as deprecated in favour of CachePersistenceLayer,
                # which is the same class; the warning is about the old name.
                warnings.simplefilter("ignore", DeprecationWarning)
                # redis-py's sync/async union return types do not match the protocol; the client does.
                persistence = CachePersistenceLayer(client=cast("CacheClientProtocol", client))
            config = IdempotencyConfig(
                event_key_jmespath=IDEMPOTENCY_KEY_JMESPATH,
                expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
                raise_on_no_idempotency_key=True,
                response_hook=_log_repeat,
            )
            process: Callable[..., HandlerResult] = idempotent_function(
                _run_handler,
                data_keyword_argument="event",
                persistence_store=persistence,
                config=config,
                key_prefix=idempotency_key_prefix(settings.cache_prefix, self.name),
            )
            self._built = (client, config, process)
        return self._built[1], self._built[2]
