"""``make dev`` keeps its data: the functions ``local.dev`` runs, twice on one data directory (a temporary
one in place of ``.local/data``), with real PostgreSQL, Valkey, stubs, bus and local API.

The second run finds the demo collection, a registered notification token and the cache where the first
left them, and does not ask the Alchemy stub for the collection again (a third, after an ingestion left
unfinished, queues it again); a server a killed run left behind
and a stale ``postmaster.pid`` do not stop a start; ``remove_data`` (``make dev-reset``) starts clean.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT, ERC721_TOKEN_COUNT
from local.dev import DevRun, load_demo_collection, start_dev
from local.send_miniapp_event import signed_event
from local.services import (
    PG_SYSTEM_USER,
    POSTGRES_DIR,
    VALKEY_DIR,
    DataDirInUseError,
    remove_data,
    start_services,
)
from such_market.container import close_all

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INGESTION_TIMEOUT_SECONDS = 120.0
TOKEN = "dev-data-token-of-run-1"
PROBE_KEY = "dev-data-probe"
COLLECTION = f"/api/collection/{ERC721_CONTRACT}"
USER_SERVICES = (
    "DATABASE_URL",
    "REDIS_URL",
    "ALCHEMY_API_KEY",
    "ALCHEMY_BASE_URL",
    "NEYNAR_API_KEY",
    "NEYNAR_BASE_URL",
)


@pytest.fixture
def dev_environment() -> Iterator[Callable[[], None]]:
    """A function that gives this process the environment ``make dev`` starts from (none of the user's
    servers or upstreams) and forgets the functions' connections: a new ``make dev`` process, as far as
    ``start_dev`` can tell (it applies the functions' environment to the process). Restored afterwards."""
    saved = dict(os.environ)

    def fresh_process() -> None:
        close_all()
        os.environ.clear()
        os.environ.update({name: value for name, value in saved.items() if name not in USER_SERVICES})

    fresh_process()
    try:
        yield fresh_process
    finally:
        close_all()
        os.environ.clear()
        os.environ.update(saved)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local API
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own local API
        status: int = response.status
        return status


def _collection_row(database_url: str) -> dict[str, Any]:
    """The demo collection's row as our ingestion left it (its state, timestamps and counts)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT ingestion_state, nfts_indexed, owners_indexed, ingestion_started_at, ingestion_finished_at,"
            " ingestion_completed_at, updated_at FROM collections WHERE contract_address = %s",
            (ERC721_CONTRACT,),
        )
        row = cursor.fetchone()
        assert row is not None
        return dict(zip([column.name for column in cursor.description or ()], row, strict=True))


def _ingest_requests(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM cache_events_outbox WHERE detail_type = 'collection.ingest_requested'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_ingestion(database_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + INGESTION_TIMEOUT_SECONDS
    while (row := _collection_row(database_url))["ingestion_state"] != "complete":
        assert row["ingestion_state"] in {"queued", "running"}, row
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    return row


def _start(running: ExitStack, dev_data_dir: Path, tmp_path: Path) -> DevRun:
    return start_dev(running, data_dir=dev_data_dir, port=0, env_vars_file=tmp_path / "sam-env-vars.json")


def test_a_second_dev_run_serves_the_first_runs_data_without_fetching_it_again(
    dev_environment: Callable[[], None], dev_data_dir: Path, tmp_path: Path
) -> None:
    # Given a first run that ingested the demo collection, registered a notification token and cached a page
    with ExitStack() as running:
        first = _start(running, dev_data_dir, tmp_path)
        assert first.alchemy_stub is not None
        url, database_url = first.api.url, first.services.database_url
        assert "ingestion queued" in load_demo_collection(url, database_url=database_url, bus_url=first.bus.url)
        ingested = _wait_for_ingestion(database_url)
        assert ingested["nfts_indexed"] == ERC721_TOKEN_COUNT
        assert first.alchemy_stub.request_count(contract=ERC721_CONTRACT) > 0
        body = signed_event(fid=3, event="notifications_enabled", url=first.notification_stub.url, token=TOKEN)
        assert _post(f"{url}/api/webhook", body) == 200
        assert _get(f"{url}{COLLECTION}/nfts?pageSize=20")[1]["x-cache"] == "MISS"
        cache = redis.Redis.from_url(first.services.redis_url)
        cache.set(PROBE_KEY, b"kept")
        cached_keys = cache.dbsize()
        cache.close()
        requests_written = _ingest_requests(database_url)
    dev_environment()

    # When dev starts again on the same data directory
    with ExitStack() as running:
        started = time.monotonic()
        second = _start(running, dev_data_dir, tmp_path)
        said = load_demo_collection(second.api.url, database_url=second.services.database_url, bus_url=second.bus.url)
        status, _, answer = _get(f"{second.api.url}{COLLECTION}")
        ready = time.monotonic() - started
        # measured, not asserted (the bar is 5 s; read it with -s)
        print(f"second start: services, migrations, stubs, bus, API, demo collection served in {ready:.2f} s")  # noqa: T201

        # Then the demo collection is served as the first run stored it, and nothing asked for it again:
        # our ingestion's row is untouched, no ingestion request was written, the stub saw no request for it
        assert status == 200
        assert json.loads(answer)["contractAddress"].lower() == ERC721_CONTRACT
        assert "already stored" in said
        assert _collection_row(second.services.database_url) == ingested
        assert _ingest_requests(second.services.database_url) == requests_written
        assert second.alchemy_stub is not None
        assert second.alchemy_stub.request_count(contract=ERC721_CONTRACT) == 0
        # the first run's notification token is still registered
        with psycopg.connect(second.services.database_url, autocommit=True) as conn:
            tokens = conn.execute("SELECT fid, enabled FROM notification_tokens WHERE token = %s", (TOKEN,)).fetchall()
        assert tokens == [(3, True)]
        # and the cache came back from its append-only file: every key, the cached page served as a hit
        cache = redis.Redis.from_url(second.services.redis_url)
        assert cache.get(PROBE_KEY) == b"kept"
        assert cache.dbsize() >= cached_keys
        cache.close()
        assert _get(f"{second.api.url}{COLLECTION}/nfts?pageSize=20")[1]["x-cache"] == "HIT"

        # Given (a third run's start) a first ingestion that a stopped run left unfinished: its bus is gone
        with psycopg.connect(second.services.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE collections SET ingestion_state = 'running', ingestion_completed_at = NULL"
                " WHERE contract_address = %s",
                (ERC721_CONTRACT,),
            )
    dev_environment()

    # When dev starts again
    with ExitStack() as running:
        third = _start(running, dev_data_dir, tmp_path)
        said = load_demo_collection(third.api.url, database_url=third.services.database_url, bus_url=third.bus.url)
        # Then the ingestion is queued again (one more request, ours) and completes
        assert "queued again" in said
        assert _wait_for_ingestion(third.services.database_url)["nfts_indexed"] == ERC721_TOKEN_COUNT
        assert _ingest_requests(third.services.database_url) == requests_written + 1
    dev_environment()

    # When the data are reset (make dev-reset)
    remove_data(dev_data_dir)
    # Then the next start is empty: no migration applied, no cached key
    assert not dev_data_dir.exists()
    services = start_services(dev_data_dir)
    try:
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('collections')").fetchone() == (None,)
        assert redis.Redis.from_url(services.redis_url).dbsize() == 0
    finally:
        services.stop()


_LEAVE_SERVERS_RUNNING = """
import sys, time
from pathlib import Path
from local.services import start_services
services = start_services(Path(sys.argv[1]))
print(services.database_url, services.redis_url, *(server.process.pid for server in services.started), flush=True)
time.sleep(600)
"""


@pytest.fixture
def no_user_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_servers_left_running_by_a_killed_dev_are_stopped_and_their_data_served(
    no_user_services: None, dev_data_dir: Path
) -> None:
    # Given a dev process that started its servers on the data directory, wrote data, and was killed -9
    # (its servers run on, in their own sessions)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _LEAVE_SERVERS_RUNNING, str(dev_data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    database_url, redis_url, *pids = killed.stdout.readline().split()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('written by the killed run')")
    redis.Redis.from_url(redis_url).set(PROBE_KEY, b"kept")
    killed.kill()
    killed.wait()
    leftovers = [psutil.Process(int(pid)) for pid in pids]
    assert all(server.is_running() for server in leftovers)
    try:
        # When the services start again on it
        services = start_services(dev_data_dir)
        try:
            # Then the leftover servers were stopped, and the new ones serve what they had written
            assert not any(_alive(server) for server in leftovers)
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                assert conn.execute("SELECT note FROM kept").fetchall() == [("written by the killed run",)]
            assert redis.Redis.from_url(services.redis_url).get(PROBE_KEY) == b"kept"
        finally:
            services.stop()
    finally:
        for server in leftovers:
            if _alive(server):
                server.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_stale_postmaster_pid_naming_another_live_process_does_not_stop_the_start(
    no_user_services: None, dev_data_dir: Path
) -> None:
    # Given a data directory whose PostgreSQL was killed -9, its postmaster.pid left behind, and that pid
    # now belonging to another process of the server's user (which PostgreSQL alone takes for a live
    # postmaster: "lock file already exists")
    services = start_services(dev_data_dir)
    postgres = services.started[0]
    assert postgres.process is not None
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
    postgres.process.send_signal(signal.SIGKILL)
    postgres.process.wait()
    services.stop()  # Valkey; the killed PostgreSQL has nothing left to stop
    pid_file = dev_data_dir / POSTGRES_DIR / "postmaster.pid"
    assert pid_file.exists()
    other = subprocess.Popen(
        ["sleep", "600"],  # noqa: S607 - coreutils' sleep, any on PATH
        user=PG_SYSTEM_USER if os.geteuid() == 0 else None,
    )
    try:
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")

        # When the services start again
        services = start_services(dev_data_dir)
        try:
            # Then PostgreSQL runs on the same data, and the other process was left alone
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                assert conn.execute("SELECT to_regclass('kept')::text").fetchone() == ("kept",)
            assert other.poll() is None
            assert (dev_data_dir / VALKEY_DIR / "appendonlydir").is_dir()
        finally:
            services.stop()
    finally:
        other.kill()
        other.wait()


def test_a_data_directory_in_use_by_a_running_dev_is_refused_not_taken_over(
    no_user_services: None, dev_data_dir: Path
) -> None:
    # Given servers running on the data directory, their starter (this process, as a make dev) alive
    services = start_services(dev_data_dir)
    try:
        # When another start on the same directory is attempted
        with pytest.raises(DataDirInUseError, match="is in use by postgres"):
            start_services(dev_data_dir)
        # Then it is refused, and the running servers were left alone
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(services.redis_url).ping()
    finally:
        services.stop()
