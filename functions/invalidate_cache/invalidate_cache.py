"""EventBridge consumer: deletes exactly the cache keys each change event makes stale (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from such_market.cache.invalidation import invalidate_for
from such_market.cache.store import get_cache
from such_market.config import CacheSettings, DatabaseSettings, load_settings
from such_market.db.connection import get_connection
from such_market.events.consumer import EventConsumer
from such_market.events.models import (
    CollectionRefreshed,
    CollectionUpdated,
    EventDetail,
    NftTransferred,
    OwnershipChanged,
    UserUpdated,
)
from such_market.users.wallets import fids_owning


class InvalidatorSettings(CacheSettings, DatabaseSettings):
    """The invalidator needs the cache, and the database to find the users who own a wallet."""


consumer = EventConsumer("invalidator", settings_model=InvalidatorSettings)


def _invalidate(detail: EventDetail) -> int:
    settings = load_settings(InvalidatorSettings)

    def owners_of(wallets: Sequence[str]) -> list[int]:
        return fids_owning(conn=get_connection(settings), wallets=wallets)

    return invalidate_for(detail, get_cache(settings), owners_of)


for _model in (CollectionUpdated, CollectionRefreshed, NftTransferred, OwnershipChanged, UserUpdated):
    consumer.on(_model)(_invalidate)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
    return consumer.handle(event, context)
