"""A function's cold path imports only what it needs: each handler imported in a fresh interpreter, as Lambda
imports it (``PYTHONPATH`` = its folder + the layer), must leave heavy libraries out of ``sys.modules``.

Read functions answer a cached request with redis + orjson, imported at init: they import neither pydantic,
pydantic_settings, boto3/botocore nor Powertools, and psycopg/httpx only when first used. No function
imports pydantic_settings (settings are ``such_market.config``'s own parts), nor boto3, botocore or Powertools
before it uses them. The cached answer itself is
checked too: a cache hit served in a fresh interpreter opens no database client, no HTTP client, no AWS SDK.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.cold_start import READ_FUNCTIONS  # the public GETs: one list for this test and the bench
from tests.fixtures.seed import seed_indexed_collection

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
LAYER = ROOT / "layers" / "shared"
OTHER_FUNCTIONS = tuple(
    sorted(
        path.name
        for path in FUNCTIONS.iterdir()
        if (path / f"{path.name}.py").exists() and path.name not in READ_FUNCTIONS
    )
)
NEVER_ON_A_READ_PATH = ("pydantic", "pydantic_settings", "asyncio", "boto3", "botocore", "aws_lambda_powertools")
NEVER_AT_ALL = ("pydantic_settings", "boto3", "botocore", "aws_lambda_powertools")
"""No function pays for these at import: the AWS SDK and Powertools' utilities are imported where first used."""
ONLY_WHEN_USED = ("psycopg", "psycopg_pool", "httpx")
NOT_FOR_A_CACHE_HIT = tuple(name for name in (*NEVER_ON_A_READ_PATH, *ONLY_WHEN_USED) if name != "asyncio")
"""redis-py itself imports asyncio (``import redis`` does), so a hit may; the rest is ours to avoid."""

_REPORT = """
import json, sys
{body}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def _top_level_modules(function: str, body: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages in ``sys.modules`` after running ``body`` in a fresh interpreter of ``function``."""
    environment = {"PATH": os.environ.get("PATH", ""), **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join((str(FUNCTIONS / function), str(LAYER)))
    finished = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _REPORT.format(body=body)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    return set(json.loads(finished.stdout.splitlines()[-1]))


def test_every_function_is_checked() -> None:
    assert len(READ_FUNCTIONS) + len(OTHER_FUNCTIONS) == len(list(FUNCTIONS.glob("*/*.py")))


@pytest.mark.parametrize("function", READ_FUNCTIONS)
def test_a_read_function_imports_no_heavy_library(function: str) -> None:
    loaded = _top_level_modules(function, f"import {function}")
    assert "redis" in loaded  # init loads the cache client a hit uses (and asyncio, which redis-py imports)
    assert loaded.isdisjoint(NOT_FOR_A_CACHE_HIT), sorted(loaded & set(NOT_FOR_A_CACHE_HIT))


@pytest.mark.parametrize("function", OTHER_FUNCTIONS)
def test_no_function_imports_pydantic_settings_or_the_aws_sdk(function: str) -> None:
    loaded = _top_level_modules(function, f"import {function}")
    assert loaded.isdisjoint(NEVER_AT_ALL)


def _cached_in_this_process(db: psycopg.Connection[Any], function: str, address: str) -> dict[str, Any]:
    """The sample event of ``function`` for a seeded collection at ``address``, answered once in this process
    (so its entry is cached); the first page for a page route, the page every client shares."""
    seed_indexed_collection(db, address=address, tokens=5, holder=lambda _: "0x" + "11" * 20)
    event: dict[str, Any] = json.loads((ROOT / "events" / f"{function}.json").read_text())
    event["pathParameters"] = {"contractAddress": address}
    event["queryStringParameters"] = None
    sys.path.insert(0, str(FUNCTIONS / function))
    try:
        handler = importlib.import_module(function)  # a handler module, on sys.path only here
        assert handler.lambda_handler(event, None)["statusCode"] == 200
    finally:
        sys.path.remove(str(FUNCTIONS / function))
    return event


def test_a_cache_hit_in_a_fresh_container_loads_only_the_cache_client(
    lambda_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # Given a collection page already cached (served once, in this process)
    event = _cached_in_this_process(db, "collection_nfts", "0x" + "c0" * 20)

    # When a fresh container serves the same request
    body = (
        "import collection_nfts\n"
        f"answer = collection_nfts.lambda_handler(json.loads({json.dumps(json.dumps(event))}), None)\n"
        "assert answer['statusCode'] == 200 and answer['headers']['X-Cache'] == 'HIT', answer"
    )
    loaded = _top_level_modules("collection_nfts", body, env={**lambda_env, "CACHE_ANALYTICS": "false"})

    # Then it answered from the cache with redis and orjson only
    assert {"redis", "orjson"} <= loaded
    assert loaded.isdisjoint(NOT_FOR_A_CACHE_HIT), sorted(loaded & set(NOT_FOR_A_CACHE_HIT))


def test_a_cached_reads_first_answer_imports_nothing(lambda_env: dict[str, str], db: psycopg.Connection[Any]) -> None:
    """Init (the handler's import) loads what a hit uses — the cache client, the host-name codec, redis-py's
    version given rather than read from package metadata — so the first answer is a round trip, and under
    SnapStart a restored container imports nothing either."""
    # Given a collection's metadata already cached (served once, in this process)
    event = _cached_in_this_process(db, "collection_metadata", "0x" + "c2" * 20)

    # When a fresh container imports the handler, then answers the same request (analytics on, as deployed)
    body = (
        "import collection_metadata\n"
        "before = set(sys.modules)\n"
        f"answer = collection_metadata.lambda_handler(json.loads({json.dumps(json.dumps(event))}), None)\n"
        "assert answer['headers']['X-Cache'] == 'HIT', answer\n"
        "new = sorted(set(sys.modules) - before)\n"
        "assert not new, new\n"
    )

    # Then the answer loaded no module (the probe fails with the list otherwise)
    _top_level_modules("collection_metadata", body, env={**lambda_env, "CACHE_ANALYTICS": "true"})


# What a function's first answer does not use, even though the function uses it on another path (issue 16):
# each entry failed before its import moved to where it is used.
NOT_AT_IMPORT = {
    "admin_notifications": ("pydantic",),  # the transfer event model is a type of the news recorder only
    "cache_clear": ("pydantic",),  # cache.cleared is built in its wire form (such_market.events.wire)
    "cache_metrics": ("pydantic",),  # an alert id is checked against a pattern, not the OpenAPI models
    "miniapp_webhook": ("pydantic",),  # the body is the request's (http.api), user.updated its wire form
    "notify_transfers": ("httpx",),  # recording news sends nothing: the notification client is the sender's
    # The retry sweep imports the event models only when an ingestion is due, and none of the ingestion
    "outbox_relay": ("pydantic", "httpx"),
    "redrive_dead_letters": ("pydantic",),  # the event models parse a dead letter: an empty queue has none
    "run_performance_test": ("pydantic",),  # its event is read in wire form (perftest.service.read_run_request)
}


@pytest.mark.parametrize(("function", "libraries"), sorted(NOT_AT_IMPORT.items()))
def test_a_function_imports_no_library_only_another_path_uses(function: str, libraries: tuple[str, ...]) -> None:
    loaded = _top_level_modules(function, f"import {function}")
    assert loaded.isdisjoint(libraries), sorted(loaded & set(libraries))


def test_a_stored_collections_refresh_status_loads_no_discovery_client(
    lambda_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # Given a stored collection
    address = "0x" + "c1" * 20
    seed_indexed_collection(db, address=address, tokens=3, holder=lambda _: "0x" + "12" * 20)
    event = json.loads((ROOT / "events" / "refresh_status.json").read_text())
    event["pathParameters"] = {"contractAddress": address}

    # When a fresh container answers its refresh status (read from PostgreSQL on every request)
    body = (
        "import refresh_status\n"
        f"answer = refresh_status.lambda_handler(json.loads({json.dumps(json.dumps(event))}), None)\n"
        "assert answer['statusCode'] == 200, answer\n"
        f"assert json.loads(answer['body'])['contractAddress'] == {address!r}, answer"
    )
    loaded = _top_level_modules("refresh_status", body, env={**lambda_env, "CACHE_ANALYTICS": "false"})

    # Then it used PostgreSQL, and neither Alchemy's HTTP client nor the event models a first sight needs
    assert "psycopg" in loaded
    assert loaded.isdisjoint(("httpx", "pydantic", "boto3", "aws_lambda_powertools")), sorted(
        loaded & {"httpx", "pydantic", "boto3", "aws_lambda_powertools"}
    )


def test_the_authorizers_answer_loads_no_logging() -> None:
    # Given a fresh authorizer container (the token a plain variable, as locally)
    token = "an-admin-token-0123456789"
    body = (
        "import admin_authorizer\n"
        f"answer = admin_authorizer.lambda_handler({{'headers': {{'authorization': 'Bearer {token}'}}}}, None)\n"
        "assert answer == {'isAuthorized': True}, answer"
    )
    # When it answers, Then it has hashed and compared without importing logging (only a failure logs), nor
    # urllib (the secret's id is percent-encoded by such_market.secrets itself)
    loaded = _top_level_modules("admin_authorizer", body, env={"ADMIN_TOKEN": token})
    assert "orjson" in loaded
    assert loaded.isdisjoint({"logging", "urllib", "ipaddress"}), sorted(loaded & {"logging", "urllib", "ipaddress"})


COLLECTION_READS = (
    "collection_metadata",
    "collection_nfts",
    "collection_traits",
    "collection_nft",
    "nft_owner",
    "owned_nfts",
)


@pytest.mark.parametrize("function", COLLECTION_READS)
def test_a_collection_read_imports_its_queries_only_for_a_miss(function: str) -> None:
    # A cached read's first answer is a hit: the SQL and the writes (and their row classes) wait for a miss
    body = (
        f"import {function}\n"
        "assert 'such_market.collections.queries' not in sys.modules\n"
        "assert 'such_market.collections.writes' not in sys.modules"
    )
    _top_level_modules(function, body)


class _RecordingInvoker:
    """The local bus's invoker that runs no function: it keeps what each rule delivered."""

    region = "us-east-1"

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []

    def invoke(self, function_id: str, event: dict[str, Any]) -> None:
        del function_id
        self.delivered.append(event)


def _answered_in_a_fresh_container(
    function: str, event: dict[str, Any], lambda_env: dict[str, str]
) -> tuple[set[str], list[dict[str, Any]]]:
    """``event`` answered (200 or 202) by ``function`` in a fresh interpreter publishing to a local bus:
    the top-level packages it loaded, and the events the bus delivered."""
    from local.bus import LocalEventBus
    from local.template import Template

    invoker = _RecordingInvoker()
    template = Template.load(ROOT / "template.yaml")
    with LocalEventBus(template, invoker, bus_name="such-market", quiet=True) as bus:  # type: ignore[arg-type]
        body = (
            f"import {function}\n"
            f"answer = {function}.lambda_handler(json.loads({json.dumps(json.dumps(event))}), None)\n"
            "assert answer['statusCode'] in (200, 202), answer"
        )
        env = {**lambda_env, "EVENTBRIDGE_ENDPOINT_URL": bus.url, "CACHE_ANALYTICS": "false"}
        loaded = _top_level_modules(function, body, env=env)
        assert bus.drain()
    return loaded, invoker.delivered


def test_learning_a_changed_user_records_and_publishes_user_updated_without_pydantic(
    lambda_env: dict[str, str], db: psycopg.Connection[Any], cache: Any
) -> None:
    from such_market.events.models import UserUpdated, parse_detail

    # Given a stored user (learnt in this process) whose row is stale and shows an old wallet and name
    fid = 6
    event: dict[str, Any] = json.loads((ROOT / "events" / "user_profile.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/api/profile/{fid}"
    event["pathParameters"] = {"fid": str(fid)}
    user_profile = importlib.import_module("user_profile")
    assert user_profile.lambda_handler(event, None)["statusCode"] == 200
    old_wallet = "0x" + "66" * 20
    db.execute(
        "UPDATE fc_users SET username = 'old', verified_eth_addresses = ARRAY[%s], "
        "fetched_at = now() - interval '1 day' WHERE fid = %s",
        (old_wallet, fid),
    )
    cache.flushdb()

    # When a fresh container serves the profile, publishing to a local bus
    loaded, delivered = _answered_in_a_fresh_container("user_profile", event, lambda_env)

    # Then it committed user.updated with the user's change and published it at once, without the models
    assert "boto3" in loaded
    assert "pydantic" not in loaded
    detail_type, stored, published_at = db.execute(
        "SELECT detail_type, detail, published_at FROM cache_events_outbox ORDER BY id DESC LIMIT 1"
    ).fetchone() or (None, None, None)
    assert (detail_type, published_at is not None) == ("user.updated", True)
    # And what the bus received is the stored event, which the consumers' strict parse accepts
    (user_updated,) = [event for event in delivered if event["detail-type"] == "user.updated"]
    assert user_updated["detail"] == stored
    detail = parse_detail("user.updated", user_updated["detail"])
    assert isinstance(detail, UserUpdated)
    assert detail.fid == fid
    assert old_wallet in detail.wallets
    assert list(detail.wallets) == sorted(set(detail.wallets))


def test_a_webhook_delivery_commits_publishes_and_invalidates_without_pydantic(
    lambda_env: dict[str, str], db: psycopg.Connection[Any], cache: Any
) -> None:
    from such_market.cache.keys import CacheKeys
    from such_market.events.models import parse_detail

    # Given the sample delivery's ERC-721 collection, indexed, and its minted token's ownership cached
    event: dict[str, Any] = json.loads((ROOT / "events" / "alchemy_webhook.json").read_text())
    activity = json.loads(event["body"])["event"]["activity"][0]
    contract, token_id = activity["contractAddress"].lower(), int(activity["erc721TokenId"], 16)
    seed_indexed_collection(db, address=contract, tokens=3, holder=lambda _: "0x" + "11" * 20)
    ownership_key = CacheKeys("such-market").ownership(contract, token_id)
    cache.set(ownership_key, b"stale")

    # When a fresh container receives the delivery, publishing to a local bus
    loaded, delivered = _answered_in_a_fresh_container("alchemy_webhook", event, lambda_env)

    # Then it committed and published its events, and deleted the stale key, without the event models
    assert {"boto3", "psycopg"} <= loaded
    assert "pydantic" not in loaded
    assert not cache.exists(ownership_key)
    kinds = sorted(event["detail-type"] for event in delivered)
    assert {"nft.transferred", "ownership.changed"} <= set(kinds)
    # And every event the bus received is one the consumers' strict parse accepts
    for published in delivered:
        parse_detail(published["detail-type"], published["detail"])


def test_a_refresh_queues_its_ingestion_without_pydantic(
    lambda_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    from such_market.events.models import CollectionIngestRequested, parse_detail

    # Given a stored collection whose last ingestion is complete
    address = "0x" + "c3" * 20
    seed_indexed_collection(db, address=address, tokens=3, holder=lambda _: "0x" + "13" * 20)
    event: dict[str, Any] = json.loads((ROOT / "events" / "refresh_collection.json").read_text())
    event["pathParameters"] = {"contractAddress": address}

    # When a fresh container accepts a refresh of it
    loaded, delivered = _answered_in_a_fresh_container("refresh_collection", event, lambda_env)

    # Then it queued the ingestion through the outbox and the bus, without the event models
    assert "pydantic" not in loaded
    (requested,) = [event for event in delivered if event["detail-type"] == "collection.ingest_requested"]
    detail = parse_detail("collection.ingest_requested", requested["detail"])
    assert isinstance(detail, CollectionIngestRequested)
    assert (detail.contract_address, detail.reason) == (address, "refresh")
