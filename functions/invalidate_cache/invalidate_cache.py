"""EventBridge consumer: deletes exactly the cache keys each change event makes stale (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from such_market.config import CacheSettings, DatabaseSettings, FunctionSettings
from such_market.events.consumer import EventConsumer
from such_market.events.invalidation import INVALIDATING_EVENTS, invalidate_for
from such_market.events.models import EventDetail
from such_market.runtime import runtime_for
from such_market.users.wallets import fids_owning

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path


class InvalidatorSettings(FunctionSettings):
    """The invalidator needs the cache, and the database to find the users who own a wallet."""

    cache: CacheSettings
    database: DatabaseSettings


# Deleting keys is idempotent by itself: no idempotency record, which would live in the very cache whose
# outage must not turn every invalidation into a failure (a failure goes to the dead letters, redriven
# once the cache answers again: RedriveDeadLettersFunction).
consumer = EventConsumer("invalidator", settings_model=InvalidatorSettings, idempotent=False)


def _invalidate(detail: EventDetail) -> int:
    runtime = runtime_for(InvalidatorSettings)

    def owners_of(wallets: Sequence[str]) -> list[int]:
        return fids_owning(conn=runtime.conn, wallets=wallets)

    return invalidate_for(detail, runtime.cache, owners_of)


for _model in INVALIDATING_EVENTS:
    consumer.on(_model)(_invalidate)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
    return consumer.handle(event, context)
