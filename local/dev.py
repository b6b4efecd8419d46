"""``make dev``: the whole backend on this machine.

Starts PostgreSQL and Valkey (embedded, unless ``DATABASE_URL``/``REDIS_URL`` name servers to use),
migrates the database, starts the local event bus and the upstream stubs it needs, gives every function
its local environment, starts the schedules and the local API (127.0.0.1:3000, ``PORT`` overrides), and
prints where everything is and the admin token of this run; the local API also serves Swagger UI
(``local.docs``), and ``local.invoke.ENV_VARS_FILE`` gets the env-vars file for ``sam local invoke`` (or
``python -m local.invoke``) pointing at these services. Ctrl-C (SIGINT) or SIGTERM stops everything
it started and exits 0.

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

import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from local.alchemy_stub import ERC721_CONTRACT, AlchemyStub
from local.api import DEFAULT_PORT, LocalApi
from local.bus import DEAD_LETTER_QUEUE, LocalEventBus
from local.docs import DOCS_PATH, DOCUMENT_PATH
from local.invoke import ENV_VARS_FILE, write_env_vars
from local.invoker import LOCAL_AWS, LOCAL_DEFAULTS, LOCAL_REGION, Invoker, ensure_layer_on_path, local_environment
from local.neynar_stub import NeynarStub
from local.notification_stub import NotificationClientStub
from local.scheduler import LocalScheduler, describe
from local.services import start_services
from local.stub_server import StubServer
from local.template import DEFAULT_TEMPLATE, Template

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
HOST = "127.0.0.1"
EVENT_BUS_NAME = "such-market"


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


def _load_demo_collection(api_url: str) -> None:
    """Ask for the demo collection once, as a user would: seen for the first time, it is stored and
    queued for ingestion, which the local bus delivers to the ingestion function."""
    import urllib.request

    url = f"{api_url}/api/collection/{ERC721_CONTRACT}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local API
        print(f"demo collection {ERC721_CONTRACT}: {response.status}, ingestion queued", flush=True)


def main() -> int:
    ignore_signals = _install_stop_signals()
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    stop = threading.Event()
    with ExitStack() as running:
        try:
            template = Template.load(DEFAULT_TEMPLATE)
            print("starting PostgreSQL and Valkey …", flush=True)
            services = start_services()
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
            write_env_vars(ENV_VARS_FILE, environment, template)
            scheduler = LocalScheduler(template, invoker, region=LOCAL_REGION).start()
            running.callback(scheduler.stop)
            api = LocalApi(template, invoker, host=HOST, port=port, docs=True).start()
            running.callback(api.stop)
            print(
                _summary(
                    api=api,
                    bus=bus,
                    scheduler=scheduler,
                    environment=environment,
                    alchemy_stub=alchemy_stub,
                    neynar_stub=neynar_stub,
                    notification_stub=notification_stub,
                ),
                flush=True,
            )
            if alchemy_stub is not None:
                _load_demo_collection(api.url)
            while not stop.wait(timeout=1.0):
                pass  # the signal handlers end this wait by raising KeyboardInterrupt
        except KeyboardInterrupt:
            ignore_signals()  # a second Ctrl-C must not interrupt the shutdown
            print("\nstopping …", flush=True)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
