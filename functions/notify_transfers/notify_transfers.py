"""EventBridge consumer of ``nft.transferred``: the transfer becomes news for the users whose verified
wallets sent or received it (collected per user, sent by the scheduled sender), once per ``eventId``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from such_market.events.consumer import EventConsumer
from such_market.events.models import NftTransferred
from such_market.notifications.service import TransferNotifierSettings, record_transfer_news
from such_market.notifications.settings import NotificationSettings
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

consumer = EventConsumer("transfer-notifier", settings_model=TransferNotifierSettings)


@consumer.on(NftTransferred)
def _transferred(detail: NftTransferred) -> dict[str, int]:
    runtime = runtime_for(TransferNotifierSettings)
    settings = runtime.settings.part(NotificationSettings)
    return record_transfer_news(conn=runtime.conn, detail=detail, collect_seconds=settings.notification_digest_seconds)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
    return consumer.handle(event, context)
