"""Shared fixtures: real PostgreSQL and Valkey for every test that needs them.

The servers start once per session (embedded, or the ones ``DATABASE_URL``/``REDIS_URL`` name). A
template database is migrated once; each test gets a fresh database cloned from it and a flushed
cache, so no test sees another's data. ``lambda_env`` sets the variables a handler reads at cold
start and forgets every per-container cache so each test is a cold container.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg
import pytest
import redis
from moto import mock_aws

from local.alchemy_stub import AlchemyStub
from local.neynar_stub import NeynarStub
from local.services import EmbeddedValkeyCluster, Services, remove_data, start_services
from such_market.container import close_all
from such_market.db.connection import get_connection
from such_market.db.migrations import migrate
from such_market.events.publisher import get_events_client

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
TEMPLATE_DB = "such_market_template"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
WEBHOOK_SIGNING_KEY = "test-webhook-signing-key"


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database name replaced by ``name``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_connect(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    running = start_services()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def dev_data_dir() -> Iterator[Path]:
    """A data directory for ``make dev``'s kept servers in place of ``.local/data``, removed afterwards. In
    the system's temporary directory like the session's servers, not under ``tmp_path``: any other pytest
    session sets its root (``/tmp/pytest-of-<user>``) back to 0700, locking PostgreSQL's system user out."""
    parent = Path(tempfile.mkdtemp(prefix="such-market-dev-data-"))
    try:
        yield parent / "data"
    finally:
        remove_data(parent / "data")
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(services: Services) -> str:
    """A database migrated to the newest version, used as the template of every test database."""
    with _admin_connect(services.database_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}" TEMPLATE template0')
    url = database_url(services.database_url, TEMPLATE_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, MIGRATIONS)
    return TEMPLATE_DB


def _create_database(services: Services, template: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with _admin_connect(services.database_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield database_url(services.database_url, name)
    finally:
        get_connection.close_all()
        with _admin_connect(services.database_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(services: Services, template_db: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database for this test."""
    yield from _create_database(services, template_db)


@pytest.fixture
def empty_db_url(services: Services) -> Iterator[str]:
    """URL of a fresh, empty (unmigrated) database for this test."""
    yield from _create_database(services, "template0")


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@dataclass(frozen=True)
class CacheServer:
    """The cache every test runs against: the standalone Valkey, or with ``--cache-cluster`` a 3-primary
    Valkey cluster (the template's default mode), so the whole suite can run in either."""

    url: str
    cluster: bool

    def client(self) -> redis.Redis:
        """A client of the right kind (typed as ``Redis``: both answer the commands tests use)."""
        if self.cluster:
            return redis.RedisCluster.from_url(self.url)  # type: ignore[return-value]
        return redis.Redis.from_url(self.url)

    def flush(self) -> None:
        client = self.client()
        if self.cluster:
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)  # type: ignore[call-arg]
        else:
            client.flushdb()
        client.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cache-cluster",
        action="store_true",
        help="run every test against a 3-primary Valkey cluster (REDIS_CLUSTER=true) instead of one node",
    )


@pytest.fixture(scope="session")
def cache_server(request: pytest.FixtureRequest, services: Services) -> CacheServer:
    if request.config.getoption("--cache-cluster"):
        return CacheServer(request.getfixturevalue("valkey_cluster"), cluster=True)
    return CacheServer(services.redis_url, cluster=False)


@pytest.fixture
def cache(cache_server: CacheServer) -> Iterator[redis.Redis]:
    """A client of the test cache, flushed before the test."""
    cache_server.flush()
    client = cache_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[str]:
    """URL of a 3-primary Valkey cluster (``REDIS_CLUSTER_URL`` or an embedded one), started on first use."""
    external = os.environ.get("REDIS_CLUSTER_URL")
    if external:
        yield external
        return
    cluster = EmbeddedValkeyCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def any_cache(request: pytest.FixtureRequest, services: Services) -> tuple[str, bool]:
    """(url, cluster mode) of a flushed cache: each test using it runs on a standalone and a cluster Valkey."""
    if request.param == "standalone":
        url, cluster = services.redis_url, False
        client: redis.Redis | redis.RedisCluster = redis.Redis.from_url(url)
        client.flushdb()
    else:
        url, cluster = request.getfixturevalue("valkey_cluster"), True
        client = redis.RedisCluster.from_url(url)
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    client.close()
    return url, cluster


@pytest.fixture(scope="session")
def alchemy_stub_server() -> Iterator[AlchemyStub]:
    with AlchemyStub() as stub:
        yield stub


@pytest.fixture
def alchemy_stub(alchemy_stub_server: AlchemyStub) -> AlchemyStub:
    """The Alchemy-compatible stub, with no faults injected and its counters at zero."""
    return alchemy_stub_server.reset()


@pytest.fixture(scope="session")
def neynar_stub_server() -> Iterator[NeynarStub]:
    with NeynarStub() as stub:
        yield stub


@pytest.fixture
def neynar_stub(neynar_stub_server: NeynarStub) -> NeynarStub:
    """The Neynar-compatible stub, with no faults injected and its counters at zero."""
    return neynar_stub_server.reset()


@pytest.fixture
def lambda_env(
    db_url: str,
    cache_server: CacheServer,
    cache: redis.Redis,
    *,
    alchemy_stub: AlchemyStub,
    neynar_stub: NeynarStub,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """The environment of a local Lambda container pointed at this test's database and cache."""
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": cache_server.url,
        "REDIS_CLUSTER": "true" if cache_server.cluster else "false",
        "CACHE_PREFIX": "such-market",
        "EVENT_BUS_NAME": "such-market",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "ALCHEMY_API_KEY": alchemy_stub.api_key,
        "ALCHEMY_BASE_URL": alchemy_stub.base_url,
        "ALCHEMY_MAX_ATTEMPTS": "3",
        "ALCHEMY_RETRY_BUDGET_SECONDS": "5",
        "ALCHEMY_WEBHOOK_SIGNING_KEY": WEBHOOK_SIGNING_KEY,
        "NEYNAR_API_KEY": neynar_stub.api_key,
        "NEYNAR_BASE_URL": neynar_stub.base_url,
        "NEYNAR_HUB_URL": neynar_stub.base_url,
        "NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB": "true",
        "NEYNAR_MAX_ATTEMPTS": "2",
        "NEYNAR_RETRY_BUDGET_SECONDS": "3",
        "POWERTOOLS_SERVICE_NAME": "such-market",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "SuchMarket",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name in (
        "DB_SECRET_ARN",
        "ADMIN_TOKEN_SECRET_ARN",
        "ALCHEMY_API_KEY_SECRET_ARN",
        "ALCHEMY_WEBHOOK_SIGNING_KEY_SECRET_ARN",
        "NEYNAR_API_KEY_SECRET_ARN",
        "EVENTBRIDGE_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    close_all()  # a cold container
    try:
        yield env
    finally:
        close_all()


@dataclass
class MotoBus:
    """A moto EventBridge bus whose rule delivers every such-market event to an SQS queue."""

    name: str
    events: object
    sqs: object
    queue_url: str

    def received(self) -> list[dict[str, object]]:
        """Every event the rule delivered since the last call (removed from the queue)."""
        messages: list[dict[str, object]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(  # type: ignore[attr-defined]
            "Messages", []
        ):
            for message in batch:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])  # type: ignore[attr-defined]
        return messages

    def received_ids(self) -> list[str]:
        return [message["detail"]["eventId"] for message in self.received()]  # type: ignore[index]


@pytest.fixture
def moto_bus() -> Iterator[MotoBus]:
    """A moto bus named ``such-market`` with a catch-all rule targeting a queue (AWS mocked inside)."""
    get_events_client.close_all()  # clients made outside the mock must not leak into it
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events.create_event_bus(Name="such-market")
        queue_url = sqs.create_queue(QueueName="such-market-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName="such-market", EventPattern=json.dumps({"source": ["such-market"]}))
        events.put_targets(Rule="all", EventBusName="such-market", Targets=[{"Id": "queue", "Arn": queue_arn}])
        yield MotoBus(name="such-market", events=events, sqs=sqs, queue_url=queue_url)
    get_events_client.close_all()


def pytest_configure(config: pytest.Config) -> None:
    # Keep the tests off any real AWS account even if the machine has credentials.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
