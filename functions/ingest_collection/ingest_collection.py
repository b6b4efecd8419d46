"""EventBridge consumer of ``collection.ingest_requested``: runs the collection's ingestion job (SPEC §6).

Once per ``eventId`` (Powertools idempotency). The job's time budget is the invocation's remaining time
less a margin, so a run records its end before Lambda's timeout could stop it. Returns the run's report;
an upstream failure is recorded on the collection and re-raised, so Lambda retries the event and then
sends it to the dead-letter queue. A delivery that fails before the job starts (the cache behind the
idempotency records is down) releases the collection's "queued" state (``release_lost_ingestion``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from such_market import deadline
from such_market.collections.ingestion import DEFAULT_TIME_BUDGET_SECONDS, ingest_collection, time_budget_for
from such_market.collections.refresh import release_lost_ingestion
from such_market.events.consumer import EventConsumer
from such_market.events.models import CollectionIngestRequested
from such_market.runtime import ReadPathSettings, runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

consumer = EventConsumer("ingester", settings_model=ReadPathSettings)


@consumer.on(CollectionIngestRequested)
def _ingest(detail: CollectionIngestRequested) -> dict[str, object]:
    runtime = runtime_for(ReadPathSettings)
    report = ingest_collection(
        conn=runtime.conn,
        alchemy=runtime.alchemy,
        publisher=runtime.publisher,
        address=detail.contract_address,
        reason=detail.reason,
        time_budget_seconds=_time_budget(),
    )
    return report.as_dict()


def _time_budget() -> float:
    """The run's budget: the invocation's time before its deadline (the consumer starts it), less a margin."""
    left = deadline.remaining()
    return DEFAULT_TIME_BUDGET_SECONDS if left is None else time_budget_for(int(left * 1000))


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
    try:
        return consumer.handle(event, context)
    except Exception as error:
        release_lost_ingestion(runtime_for(ReadPathSettings), event, error)
        raise
