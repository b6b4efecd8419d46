"""The fault suite's stage: its own PostgreSQL and Valkey (so pausing and killing them disturbs no other
test), the local event bus over the real template, the upstream stubs, and the local API calling the
handlers with Lambda contexts (so every request runs under its function's real deadline).

Each scenario fills a ``ScenarioReport``; at the end of the run the table of every scenario is printed
(``make chaos`` runs only this suite; ``make test`` runs it with the rest).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from local.alchemy_stub import AlchemyStub
from local.api import IncomingRequest, LocalApi
from local.bus import LocalEventBus
from local.dev import EVENT_BUS_NAME, function_environment
from local.invoker import Invoker
from local.neynar_stub import NeynarStub
from local.services import EmbeddedPostgres, EmbeddedValkey
from local.template import Template
from such_market.container import close_all
from such_market.db.migrations import migrate
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SIGNING_KEY

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_MARGIN_SECONDS = 1.0  # such_market.deadline.SAFETY_MARGIN_SECONDS


@dataclass
class Answer:
    status: int
    cache: str | None
    retry_after: str | None
    body: Any
    seconds: float


@dataclass
class ScenarioReport:
    """What a scenario measured (printed in the summary table)."""

    name: str
    deadline_seconds: float
    baseline: list[float] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    stale_after_recovery: int = 0
    stale_seconds: float | None = None
    """How long after recovery the cache still held a value older than a change committed during the
    outage, when the scenario measures it (shown beside the stale answers)."""
    events_lost: int = 0

    def add(self, answers: Sequence[Answer]) -> None:
        self.answers.extend(answers)

    @property
    def errors(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers:
            if answer.status >= 400:
                counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts

    @property
    def bad_5xx(self) -> int:
        """5xx answers other than a 503 with Retry-After."""
        return sum(
            answer.status >= 500 and not (answer.status == 503 and answer.retry_after) for answer in self.answers
        )

    @property
    def longest(self) -> float:
        return max((answer.seconds for answer in self.answers), default=0.0)

    def added_latency(self, q: float) -> float:
        if not self.answers:
            return 0.0
        times = sorted(answer.seconds for answer in self.answers)
        value = times[min(len(times) - 1, int(q * len(times)))]
        return value - (statistics.median(self.baseline) if self.baseline else 0.0)

    def row(self) -> str:
        errors = ", ".join(f"{status} x{count}" for status, count in sorted(self.errors.items())) or "none"
        return (
            f"| {self.name} | {len(self.answers)} | {errors} | {self.added_latency(0.5) * 1000:.0f} / "
            f"{self.added_latency(0.99) * 1000:.0f} ms | {self.longest:.2f} s (deadline {self.deadline_seconds:.1f} s)"
            f" | {self.stale_after_recovery}{self._stale_window()} | {self.events_lost} | {self.bad_5xx} |"
        )

    def _stale_window(self) -> str:
        return "" if self.stale_seconds is None else f" (old value cached {self.stale_seconds:.1f} s after recovery)"


REPORTS: list[ScenarioReport] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault suite")
    terminalreporter.write_line(
        "| scenario | requests | errors | added latency p50 / p99 | longest | stale after recovery | events lost"
        " | 5xx other than 503+Retry-After |"
    )
    terminalreporter.write_line("|---|---|---|---|---|---|---|---|")
    for report in REPORTS:
        terminalreporter.write_line(report.row())


@dataclass
class Stage:
    """Everything a scenario acts on."""

    postgres: EmbeddedPostgres
    valkey: EmbeddedValkey
    database_url: str
    bus: LocalEventBus
    api: LocalApi
    alchemy: AlchemyStub
    neynar: NeynarStub
    template: Template

    def call(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> Answer:
        started = time.monotonic()
        response = self.api.handle(IncomingRequest(method=method, target=target, headers=list(headers), body=body))
        seconds = time.monotonic() - started
        decoded = {name.lower(): value for name, value in response.headers}
        payload = json.loads(response.body) if response.body else None
        return Answer(response.status, decoded.get("x-cache"), decoded.get("retry-after"), payload, seconds)

    def call_all(self, targets: Sequence[str]) -> list[Answer]:
        """GET every target at once (one thread each), as concurrent clients would."""
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return list(pool.map(lambda target: self.call("GET", target), targets))

    def deadline_of(self, function_id: str) -> float:
        return self.template.function(function_id).timeout_seconds - DEADLINE_MARGIN_SECONDS

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.database_url, autocommit=True)

    # -- faults ---------------------------------------------------------------------------------------------
    def signal_postgres(self, sig: int) -> None:
        """Send ``sig`` to PostgreSQL's postmaster and every process it started (each backend runs in a
        session of its own, so the process group alone would leave the open connections answering)."""
        assert self.postgres.process is not None
        postmaster = psutil.Process(self.postgres.process.pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)

    def signal_valkey(self, sig: int) -> None:
        assert self.valkey.process is not None
        os.kill(self.valkey.process.pid, sig)

    def kill_postgres(self) -> None:
        """SIGKILL the server and its backends. The local server runs without fsync and with asynchronous
        commits (speed over durability), so a checkpoint first keeps committed data, as RDS would."""
        assert self.postgres.process is not None
        with self.connect() as conn:
            conn.execute("CHECKPOINT")
        self.signal_postgres(signal.SIGKILL)
        self.postgres.process.wait(10)
        self.postgres.process = None

    def restart_postgres(self) -> None:
        (self.postgres.data_dir / "postmaster.pid").unlink(missing_ok=True)
        self.postgres.start()

    def kill_valkey(self) -> None:
        assert self.valkey.process is not None
        self.valkey.process.kill()
        self.valkey.process.wait(10)
        self.valkey.process = None

    def restart_valkey(self) -> None:
        self.valkey.start()


@pytest.fixture(scope="module")
def stage_services() -> Iterator[tuple[EmbeddedPostgres, EmbeddedValkey, str]]:
    postgres = EmbeddedPostgres().start()
    valkey = EmbeddedValkey().start()
    try:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE chaos")
        url = postgres.url.rsplit("/", 1)[0] + "/chaos"
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, ROOT / "migrations")
        yield postgres, valkey, url
    finally:
        valkey.stop()
        postgres.stop()


@pytest.fixture
def stage(
    stage_services: tuple[EmbeddedPostgres, EmbeddedValkey, str],
    alchemy_stub: AlchemyStub,
    neynar_stub: NeynarStub,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stage]:
    postgres, valkey, url = stage_services
    template = Template.load(ROOT / "template.yaml")
    with psycopg.connect(url, autocommit=True) as conn:
        # A scenario's leftovers (an ingestion still reading a slow upstream, a worker finishing its request)
        # may still hold locks: end their sessions, so the next scenario starts clean and the TRUNCATE cannot
        # deadlock with them.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute(
            "TRUNCATE collections, fc_users, cache_events_outbox, ownership_activity, wallet_scans"
            " RESTART IDENTITY CASCADE"
        )
    redis.Redis.from_url(valkey.url).flushall()
    close_all()
    with LocalEventBus(template, Invoker(template), bus_name=EVENT_BUS_NAME, retry_base_delay=0.05, quiet=True) as bus:
        environment = function_environment(
            template,
            shell={},
            database_url=url,
            redis_url=valkey.url,
            bus_url=bus.url,
            admin_token=ADMIN_TOKEN,
            webhook_signing_key=WEBHOOK_SIGNING_KEY,
            alchemy_stub=alchemy_stub,
            neynar_stub=neynar_stub,
        )
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
        monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
        api = LocalApi(template, Invoker(template), quiet=True)
        stage = Stage(postgres, valkey, url, bus, api, alchemy_stub, neynar_stub, template)
        yield stage
        # Whatever a scenario did, the next one starts with both servers running.
        if postgres.process is None:
            (postgres.data_dir / "postmaster.pid").unlink(missing_ok=True)
            postgres.start()
        else:
            stage.signal_postgres(signal.SIGCONT)
        if valkey.process is None:
            valkey.start()
        else:
            os.kill(valkey.process.pid, signal.SIGCONT)
        close_all()
