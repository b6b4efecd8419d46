"""``make dev``: the whole backend on this machine.

Starts PostgreSQL and Valkey (embedded, unless ``DATABASE_URL``/``REDIS_URL`` name servers to use),
migrates the database, starts the local event bus and the upstream stubs it needs, gives every function
its local environment, starts the schedules and the local API (127.0.0.1:3000, ``PORT`` overrides), and
prints where everything is and the admin token of this run; the local API also serves Swagger UI
(``local.docs``), and ``local.invoke.ENV_VARS_FILE`` gets the env-vars file for ``sam local invoke`` (or
``python -m local.invoke``) pointing at these services. Ctrl-C (SIGINT) or SIGTERM stops everything
it started and exits 0.

Data survive between runs: PostgreSQL's data directory and Valkey's append-only file live under
``DATA_DIR`` (``.local/data``, gitignored; ``DEV_DATA_DIR`` moves it), so a second start migrates only
what is new, serves the demo collection it already ingested without asking Alchemy (or its stub) again,
and keeps registered notification tokens and cached answers. A start after a crash stops the servers a
killed run left behind (``local.services``); one still in use by a running ``make dev`` is refused.
``python -m local.dev --reset`` (``make dev-reset``) removes the data first.

The functions' environment (they share this process's), for each variable the first of:

1. what ``make dev`` runs and the user cannot move: the database and cache in use (``DATABASE_URL`` and
   ``REDIS_URL``, which are the shell's when set), the local bus (``EVENT_BUS_NAME``,
   ``EVENTBRIDGE_ENDPOINT_URL``), the dummy AWS credentials and region that keep every call off AWS, and
   for an upstream served by its stub, the stub's URL and its own key;
2. the user's shell: ``REDIS_CLUSTER=true`` with a cluster's ``REDIS_URL``, ``NEYNAR_BASE_URL``, a log
   level, ``ADMIN_TOKEN``, … all win over what follows;
3. the local defaults (``local.invoker.LOCAL_DEFAULTS``: single-node Valkey without TLS, no X-Ray), and a
   fresh admin token and webhook signing key for this run;
4. the template's values (``Globals`` and each function's own), parameter defaults included.

An upstream is served by its stub only when the shell gives it neither a key nor a base URL
(``ALCHEMY_API_KEY``/``ALCHEMY_BASE_URL``, ``NEYNAR_API_KEY``/``NEYNAR_BASE_URL``): so the stub never
overrides anything the user set. Each stub accepts only its own key and the two keys differ, so a key sent
to the wrong upstream fails here as it would in AWS. ``*_SECRET_ARN`` variables (and ``AWS_PROFILE``) are
dropped: locally secrets are plain values, and the dummy credentials could not read them anyway.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from local.alchemy_stub import ERC721_CONTRACT, AlchemyStub
from local.api import DEFAULT_PORT, LocalApi
from local.bus import DEAD_LETTER_QUEUE, LocalEventBus
from local.docs import DOCS_PATH, DOCUMENT_PATH
from local.invoke import ENV_VARS_FILE, write_env_vars
from local.invoker import LOCAL_AWS, LOCAL_DEFAULTS, LOCAL_REGION, Invoker, ensure_layer_on_path, local_environment
from local.neynar_stub import NeynarStub
from local.notification_stub import NotificationClientStub
from local.scheduler import LocalScheduler, describe
from local.services import DataDirInUseError, Services, remove_data, start_services
from local.stub_server import StubServer
from local.template import DEFAULT_TEMPLATE, Template

if TYPE_CHECKING:
    import uuid

    import psycopg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
DATA_DIR = ROOT / ".local" / "data"
"""Where ``make dev`` keeps the embedded PostgreSQL's and Valkey's data between runs."""
HOST = "127.0.0.1"
EVENT_BUS_NAME = "such-market"
DEMO_RESUME_REASON = "dev_restart"
"""The ``reason`` of the ingestion request that resumes a demo ingestion an earlier run left unfinished."""


def needs_stub(shell: Mapping[str, str], upstream: str) -> bool:
    """Whether ``upstream`` (``ALCHEMY``, ``NEYNAR``) is left to its local stub: the shell gives it
    neither a key nor a base URL."""
    return not (shell.get(f"{upstream}_API_KEY") or shell.get(f"{upstream}_BASE_URL"))


def function_environment(
    template: Template,
    *,
    shell: Mapping[str, str],
    database_url: str,
    redis_url: str,
    bus_url: str,
    admin_token: str,
    webhook_signing_key: str,
    alchemy_stub: AlchemyStub | None = None,
    neynar_stub: NeynarStub | None = None,
) -> dict[str, str]:
    """The environment every local function sees, by the precedence of the module docstring; ``shell``
    is the user's environment, ``admin_token`` and ``webhook_signing_key`` are this run's defaults."""
    controlled = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "EVENT_BUS_NAME": EVENT_BUS_NAME,
        "EVENTBRIDGE_ENDPOINT_URL": bus_url,
        "SQS_ENDPOINT_URL": bus_url,  # the bus answers GetQueueAttributes for its dead letters
        "EVENTS_DLQ_URL": f"{bus_url}/{DEAD_LETTER_QUEUE}",
        **LOCAL_AWS,
    }
    for upstream, stub in (("ALCHEMY", alchemy_stub), ("NEYNAR", neynar_stub)):
        if stub is not None:
            controlled |= {f"{upstream}_BASE_URL": stub.base_url, f"{upstream}_API_KEY": stub.api_key}
    if neynar_stub is not None:
        controlled["NEYNAR_HUB_URL"] = neynar_stub.base_url  # the stub answers the hub's app-key lookup too
    defaults = {
        **LOCAL_DEFAULTS,
        "ADMIN_TOKEN": admin_token,
        "ALCHEMY_WEBHOOK_SIGNING_KEY": webhook_signing_key,
        "NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB": "true",  # the local notification-client stub: http on 127.0.0.1
    }
    return local_environment(template, {**shell, **controlled}, defaults=defaults)


def _migrate(database_url: str) -> None:
    ensure_layer_on_path()  # a fresh clone does not install the layer: import it from its folder
    import psycopg

    from such_market.db.migrations import migrate

    with psycopg.connect(database_url, autocommit=True) as conn:
        report = migrate(conn, MIGRATIONS)
    print(f"migrated: {', '.join(report.applied) or 'nothing to apply'}", flush=True)


def _apply_environment(environment: dict[str, str]) -> None:
    for name in [name for name in os.environ if name.endswith("_SECRET_ARN") or name == "AWS_PROFILE"]:
        del os.environ[name]
    os.environ.update(environment)


def _install_stop_signals() -> Callable[[], None]:
    """Turn SIGTERM into the same KeyboardInterrupt as Ctrl-C; returns a function that ignores both."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)

    def ignore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return ignore


def _upstream(environment: Mapping[str, str], upstream: str, stub: StubServer | None) -> str:
    """Where the functions' calls to ``upstream`` (``ALCHEMY``, ``NEYNAR``) go, for the summary."""
    if stub is not None:
        return f"local stub {stub.base_url} (key {stub.api_key})"
    where = environment.get(f"{upstream}_BASE_URL") or f"{upstream.title()}'s own API"
    if not environment.get(f"{upstream}_API_KEY"):
        return f"{where}, but {upstream}_API_KEY is not set: every call will fail"
    return f"{where} with your {upstream}_API_KEY"


def _summary(
    *,
    data_dir: Path | None,
    api: LocalApi,
    bus: LocalEventBus,
    scheduler: LocalScheduler,
    environment: Mapping[str, str],
    alchemy_stub: AlchemyStub | None,
    neynar_stub: NeynarStub | None,
    notification_stub: NotificationClientStub,
) -> str:
    token = environment["ADMIN_TOKEN"]
    cluster = " (cluster mode)" if environment.get("REDIS_CLUSTER") == "true" else ""
    schedules = [f"    {describe(schedule)}" for schedule in scheduler.schedules] or ["    (none)"]
    skipped = [f"    {name}: not run automatically ({why})" for name, why in scheduler.skipped.items()]
    lines = [
        "",
        "such-market is running locally. Ctrl-C stops everything.",
        f"  API          {api.url}",
        f"  API docs     {api.url}{DOCS_PATH}   (Swagger UI; the document: {api.url}{DOCUMENT_PATH})",
        f"  health       curl {api.url}/api/health",
        f"  admin token  {token}",
        f'  admin call   curl -H "Authorization: Bearer {token}" {api.url}/api/admin/ownership/stats',
        f'  metrics      curl -H "Authorization: Bearer {token}" "{api.url}/api/admin/cache/metrics?window=15m"',
        f'  warm cache   curl -H "Authorization: Bearer {token}" -d \'{{"topN": 20}}\' {api.url}/api/admin/cache/warm',
        f'  perf test    curl -H "Authorization: Bearer {token}" -d \'{{"action": "run", "profile": "quick"}}\' '
        f"{api.url}/api/admin/cache/test/performance",
        f'               curl -H "Authorization: Bearer {token}" {api.url}/api/admin/cache/test/performance'
        "   (the latest run: ~15 s for quick)",
        f"  event bus    {bus.url}  (bus {bus.bus_name}; dead letters: curl {bus.url}/dead-letters)",
        f"  database     {environment['DATABASE_URL']}",
        f"  cache        {environment['REDIS_URL']}{cluster}",
        f"  data         {_data_line(data_dir)}",
        f"  alchemy      {_upstream(environment, 'ALCHEMY', alchemy_stub)}",
        f"  neynar       {_upstream(environment, 'NEYNAR', neynar_stub)}",
        f"  demo         curl {api.url}/api/collection/{ERC721_CONTRACT}/nfts?pageSize=5",
        f"               curl {api.url}/api/collection/{ERC721_CONTRACT}/traits",
        f"               curl {api.url}/api/collection/{ERC721_CONTRACT}/refresh   (ingestion progress)",
        f"               curl {api.url}/api/nft-contracts/1   (fids 1-50 exist with the Neynar stub)",
        f"  webhook      ALCHEMY_WEBHOOK_SIGNING_KEY={environment['ALCHEMY_WEBHOOK_SIGNING_KEY']} "
        "python -m local.send_webhook \\",
        f"                 --contract {ERC721_CONTRACT} --token 5 --from <owner> --to <wallet>",
        f"  invoke       sam build && sam local invoke <FunctionLogicalId> -e events/<file>.json "
        f"--env-vars {ENV_VARS_FILE.relative_to(ROOT)}",
        f"               python -m local.invoke <FunctionLogicalId> -e events/<file>.json "
        f"--env-vars {ENV_VARS_FILE.relative_to(ROOT)}   (no Docker)",
        f"  mini-app     python -m local.send_miniapp_event --fid 3 --url {notification_stub.url}"
        + ("" if neynar_stub else "   (signs with the Neynar stub's app keys: needs that stub)"),
        f"               notifications received: curl {notification_stub.base_url}/notifications",
        "  schedules    (run one now: python -m local.scheduler run <FunctionLogicalId>)",
        *schedules,
        *skipped,
        "",
    ]
    return "\n".join(lines)


def _data_line(data_dir: Path | None) -> str:
    if data_dir is None:
        return "DATABASE_URL and REDIS_URL are yours: nothing kept here"
    return f"{data_dir} (PostgreSQL and Valkey, kept between runs; reset with make dev-reset)"


def load_demo_collection(api_url: str, *, database_url: str, bus_url: str) -> str:
    """Make sure the demo collection is there, and say how: asked for once as a user would when it is not
    stored (stored and queued for ingestion, which the local bus delivers to the ingestion function);
    left alone when an earlier run ingested it (no upstream call); its ingestion queued again, resuming
    where it stopped, when an earlier run was stopped before it finished (that run's bus is gone)."""
    ensure_layer_on_path()
    import urllib.request

    import psycopg

    from such_market.collections.queries import get_collection

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = get_collection(conn=conn, address=ERC721_CONTRACT)
        if row is not None and row.ingestion_completed_at is not None:
            return f"demo collection {ERC721_CONTRACT}: already stored ({row.nfts_indexed} NFTs), not fetched again"
        if row is not None:
            _requeue_ingestion(conn, row.id, bus_url)
            return f"demo collection {ERC721_CONTRACT}: ingestion unfinished by an earlier run, queued again"
    url = f"{api_url}/api/collection/{ERC721_CONTRACT}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local API
        return f"demo collection {ERC721_CONTRACT}: {response.status}, ingestion queued"


def _requeue_ingestion(conn: psycopg.Connection[tuple[Any, ...]], collection_id: uuid.UUID, bus_url: str) -> None:
    from such_market.collections.writes import set_ingestion_state
    from such_market.config import EventSettings
    from such_market.events.models import CollectionIngestRequested, Event
    from such_market.events.outbox import outbox_transaction
    from such_market.events.publisher import EventPublisher

    publisher = EventPublisher(EventSettings(event_bus_name=EVENT_BUS_NAME, eventbridge_endpoint_url=bus_url))
    with outbox_transaction(conn, publisher) as tx:
        set_ingestion_state(conn=conn, collection_id=collection_id, state="queued")
        tx.add(Event(CollectionIngestRequested(contract_address=ERC721_CONTRACT, reason=DEMO_RESUME_REASON)))


@dataclass
class DevRun:
    """What ``start_dev`` started (all stopped by the ``ExitStack`` it was given)."""

    services: Services
    api: LocalApi
    bus: LocalEventBus
    scheduler: LocalScheduler
    environment: dict[str, str]
    alchemy_stub: AlchemyStub | None
    neynar_stub: NeynarStub | None
    notification_stub: NotificationClientStub


def start_dev(
    running: ExitStack,
    *,
    data_dir: Path | None,
    port: int = DEFAULT_PORT,
    env_vars_file: Path = ENV_VARS_FILE,
) -> DevRun:
    """Start everything ``make dev`` runs, stopped by ``running``: the services (their data kept in
    ``data_dir``; in temporary directories when None), migrated, then the stubs, the bus, the functions'
    environment (applied to this process), the schedules and the local API on ``port``."""
    template = Template.load(DEFAULT_TEMPLATE)
    services = start_services(data_dir)
    running.callback(services.stop)
    _migrate(services.database_url)

    shell = dict(os.environ)
    alchemy_stub = running.enter_context(AlchemyStub(host=HOST)) if needs_stub(shell, "ALCHEMY") else None
    neynar_stub = running.enter_context(NeynarStub(host=HOST)) if needs_stub(shell, "NEYNAR") else None
    notification_stub = running.enter_context(NotificationClientStub(host=HOST))
    invoker = Invoker(template, region=LOCAL_REGION)
    bus = LocalEventBus(template, invoker, bus_name=EVENT_BUS_NAME, host=HOST, region=LOCAL_REGION)
    bus.start()
    running.callback(bus.stop)
    environment = function_environment(
        template,
        shell=shell,
        database_url=services.database_url,
        redis_url=services.redis_url,
        bus_url=bus.url,
        admin_token=secrets.token_urlsafe(32),
        webhook_signing_key=secrets.token_urlsafe(24),
        alchemy_stub=alchemy_stub,
        neynar_stub=neynar_stub,
    )
    _apply_environment(environment)
    write_env_vars(env_vars_file, environment, template)
    scheduler = LocalScheduler(template, invoker, region=LOCAL_REGION).start()
    running.callback(scheduler.stop)
    api = LocalApi(template, invoker, host=HOST, port=port, docs=True).start()
    running.callback(api.stop)
    return DevRun(services, api, bus, scheduler, environment, alchemy_stub, neynar_stub, notification_stub)


def _data_dir(shell: Mapping[str, str]) -> Path | None:
    """``DEV_DATA_DIR`` when set (a test's temporary directory), else ``DATA_DIR``; None when both servers
    are the user's own (then nothing of ours holds data)."""
    if shell.get("DATABASE_URL") and shell.get("REDIS_URL"):
        return None
    return Path(shell["DEV_DATA_DIR"]) if shell.get("DEV_DATA_DIR") else DATA_DIR


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.dev", description="Run the whole backend locally.")
    parser.add_argument("--reset", action="store_true", help="remove the kept data (.local/data or DEV_DATA_DIR) first")
    args = parser.parse_args(argv)
    ignore_signals = _install_stop_signals()
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    data_dir = _data_dir(os.environ)
    stop = threading.Event()
    with ExitStack() as running:
        try:
            if args.reset and data_dir is not None:
                remove_data(data_dir)
                print(f"removed {data_dir}: starting clean", flush=True)
            where = f"data in {data_dir}, kept between runs; reset with make dev-reset" if data_dir else "yours"
            print(f"starting PostgreSQL and Valkey ({where}) …", flush=True)
            started = time.monotonic()
            run = start_dev(running, data_dir=data_dir, port=port)
            print(
                _summary(
                    data_dir=data_dir,
                    api=run.api,
                    bus=run.bus,
                    scheduler=run.scheduler,
                    environment=run.environment,
                    alchemy_stub=run.alchemy_stub,
                    neynar_stub=run.neynar_stub,
                    notification_stub=run.notification_stub,
                ),
                flush=True,
            )
            if run.alchemy_stub is not None:
                demo = load_demo_collection(run.api.url, database_url=run.services.database_url, bus_url=run.bus.url)
                print(demo, flush=True)
            print(f"ready in {time.monotonic() - started:.1f} s", flush=True)
            while not stop.wait(timeout=1.0):
                pass  # the signal handlers end this wait by raising KeyboardInterrupt
        except DataDirInUseError as error:
            print(f"not started: {error}. Is make dev running already? Stop it first (Ctrl-C).", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            ignore_signals()  # a second Ctrl-C must not interrupt the shutdown
            print("\nstopping …", flush=True)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
