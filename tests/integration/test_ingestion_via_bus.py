"""End to end through the local bus: an outbox event reaches the ingestion function by the template's rule.

The real ``template.yaml`` drives the local EventBridge bus and the in-process invoker, with the
environment ``make dev`` gives the functions (``local.dev.function_environment``): real PostgreSQL and
Valkey, the Alchemy stub over HTTP, and the bus endpoint for every publisher.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.alchemy_stub import ERC721_CONTRACT, ERC721_TOKEN_COUNT, ERC721_WALLET_COUNT, AlchemyStub, trait_counts
from local.bus import LocalEventBus
from local.dev import EVENT_BUS_NAME, function_environment
from local.invoker import Invoker
from local.services import Services
from local.template import Template
from such_market.config import EventSettings
from such_market.events.models import CollectionIngestRequested, Event
from such_market.events.outbox import outbox_transaction
from such_market.events.publisher import EventPublisher
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SIGNING_KEY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bus(
    lambda_env: dict[str, str],
    db_url: str,
    services: Services,
    alchemy_stub: AlchemyStub,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalEventBus]:
    """The local bus over the real template, every function seeing the environment of ``make dev``."""
    template = Template.load(ROOT / "template.yaml")
    with LocalEventBus(template, Invoker(template), bus_name=EVENT_BUS_NAME, retry_base_delay=0.01, quiet=True) as bus:
        environment = function_environment(
            template,
            shell={},
            database_url=db_url,
            redis_url=services.redis_url,
            bus_url=bus.url,
            admin_token=ADMIN_TOKEN,
            webhook_signing_key=WEBHOOK_SIGNING_KEY,
            alchemy_stub=alchemy_stub,
        )
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
        yield bus


def test_an_ingest_request_from_the_outbox_ingests_the_collection(
    bus: LocalEventBus, db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    # Given collection.ingest_requested for the stub's ERC-721 collection, written to the outbox and
    # published to the local bus
    publisher = EventPublisher(EventSettings(event_bus_name=EVENT_BUS_NAME, eventbridge_endpoint_url=bus.url))
    with outbox_transaction(db, publisher) as tx:
        tx.add(Event(CollectionIngestRequested(contract_address=ERC721_CONTRACT, reason="first_seen")))
    assert tx.publish_result is not None
    assert tx.publish_result.ok

    # When the bus has delivered it, and every event its consumers published in turn
    assert bus.drain(timeout=120)

    # Then the collection is completely ingested, with the stub's trait counts
    state = db.execute(
        "SELECT ingestion_state, nfts_indexed, owners_indexed FROM collections WHERE contract_address = %s",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert state == ("complete", ERC721_TOKEN_COUNT, ERC721_WALLET_COUNT)
    traits: dict[str, dict[str, int]] = {}
    for trait_type, value, count in db.execute("SELECT trait_type, trait_value, token_count FROM collection_traits"):
        traits.setdefault(trait_type, {})[value] = count
    assert traits == trait_counts(ERC721_CONTRACT)
    # And its collection.refreshed was published to the bus (and delivered: nothing dead-lettered)
    outbox = db.execute("SELECT detail_type, published_at IS NOT NULL FROM cache_events_outbox ORDER BY id").fetchall()
    assert outbox == [("collection.ingest_requested", True), ("collection.refreshed", True)]
    assert bus.dead_letters == []
