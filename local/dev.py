"""``make dev``: the whole backend on this machine.

Starts PostgreSQL and Valkey (embedded, unless ``DATABASE_URL``/``REDIS_URL`` name servers to use),
migrates the database, starts the local event bus, gives every function its local environment,
starts the schedules and the local API (127.0.0.1:3000, ``PORT`` overrides), and prints where
everything is and the admin token of this run. Ctrl-C (SIGINT) or SIGTERM stops everything it started
and exits 0.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from local.api import DEFAULT_PORT, LocalApi
from local.bus import LocalEventBus
from local.invoker import Invoker, ensure_layer_on_path, local_environment
from local.neynar_stub import NeynarStub
from local.scheduler import LocalScheduler, describe
from local.services import start_services
from local.template import DEFAULT_TEMPLATE, Template
from local.upstream_stub import ERC721_CONTRACT, AlchemyStub

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
HOST = "127.0.0.1"
EVENT_BUS_NAME = "such-market"
LOCAL_REGION = "us-east-1"


def function_environment(
    template: Template,
    *,
    database_url: str,
    redis_url: str,
    bus_url: str,
    admin_token: str,
    webhook_signing_key: str,
    alchemy_stub_url: str | None = None,
    neynar_stub_url: str | None = None,
) -> dict[str, str]:
    """The environment every local function sees (the template's values, then the local ones)."""
    upstream = {"ALCHEMY_BASE_URL": alchemy_stub_url, "ALCHEMY_API_KEY": "local-stub"} if alchemy_stub_url else {}
    if neynar_stub_url:
        upstream |= {"NEYNAR_BASE_URL": neynar_stub_url, "NEYNAR_API_KEY": "local-stub"}
    overrides = {
        **upstream,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": "false",
        "REDIS_TLS": "false",
        "CACHE_PREFIX": os.environ.get("CACHE_PREFIX", "such-market"),
        "EVENT_BUS_NAME": EVENT_BUS_NAME,
        "EVENTBRIDGE_ENDPOINT_URL": bus_url,
        "ADMIN_TOKEN": admin_token,
        "ALCHEMY_WEBHOOK_SIGNING_KEY": webhook_signing_key,
        # boto3 signs requests to the local bus with these; they never reach AWS.
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "POWERTOOLS_SERVICE_NAME": template.global_environment.get("POWERTOOLS_SERVICE_NAME", "such-market"),
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        "POWERTOOLS_METRICS_NAMESPACE": template.global_environment.get("POWERTOOLS_METRICS_NAMESPACE", "SuchMarket"),
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    }
    return local_environment(template, overrides)


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


def _summary(
    *,
    api: LocalApi,
    bus: LocalEventBus,
    scheduler: LocalScheduler,
    database_url: str,
    redis_url: str,
    token: str,
    webhook_signing_key: str,
    alchemy: str,
    neynar: str,
) -> str:
    schedules = [f"    {describe(schedule)}" for schedule in scheduler.schedules] or ["    (none)"]
    skipped = [f"    {name}: not run automatically ({why})" for name, why in scheduler.skipped.items()]
    lines = [
        "",
        "such-market is running locally. Ctrl-C stops everything.",
        f"  API          {api.url}",
        f"  health       curl {api.url}/api/health",
        f"  admin token  {token}",
        f'  admin call   curl -H "Authorization: Bearer {token}" {api.url}/api/admin/ownership/stats',
        f"  event bus    {bus.url}  (bus {bus.bus_name}; dead letters: curl {bus.url}/dead-letters)",
        f"  database     {database_url}",
        f"  cache        {redis_url}",
        f"  alchemy      {alchemy}",
        f"  neynar       {neynar}",
        f"  demo         curl {api.url}/api/collection/{ERC721_CONTRACT}/nfts?pageSize=5",
        f"               curl {api.url}/api/collection/{ERC721_CONTRACT}/traits",
        f"               curl {api.url}/api/collection/{ERC721_CONTRACT}/refresh   (ingestion progress)",
        f"               curl {api.url}/api/nft-contracts/1   (fids 1-50 exist with the Neynar stub)",
        f"  webhook      ALCHEMY_WEBHOOK_SIGNING_KEY={webhook_signing_key} python -m local.send_webhook \\",
        f"                 --contract {ERC721_CONTRACT} --token 5 --from <owner> --to <wallet>",
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

            alchemy_stub_url = None
            if not os.environ.get("ALCHEMY_API_KEY") and not os.environ.get("ALCHEMY_API_KEY_SECRET_ARN"):
                stub = AlchemyStub(host=HOST).start()
                running.callback(stub.stop)
                alchemy_stub_url = stub.base_url
            neynar_stub_url = None
            if not os.environ.get("NEYNAR_API_KEY") and not os.environ.get("NEYNAR_API_KEY_SECRET_ARN"):
                neynar_stub = NeynarStub(host=HOST).start()
                running.callback(neynar_stub.stop)
                neynar_stub_url = neynar_stub.base_url
            invoker = Invoker(template, region=LOCAL_REGION)
            bus = LocalEventBus(template, invoker, bus_name=EVENT_BUS_NAME, host=HOST, region=LOCAL_REGION)
            bus.start()
            running.callback(bus.stop)
            admin_token = secrets.token_urlsafe(32)
            webhook_signing_key = secrets.token_urlsafe(24)
            _apply_environment(
                function_environment(
                    template,
                    database_url=services.database_url,
                    redis_url=services.redis_url,
                    bus_url=bus.url,
                    admin_token=admin_token,
                    webhook_signing_key=webhook_signing_key,
                    alchemy_stub_url=alchemy_stub_url,
                    neynar_stub_url=neynar_stub_url,
                )
            )
            scheduler = LocalScheduler(template, invoker, region=LOCAL_REGION).start()
            running.callback(scheduler.stop)
            api = LocalApi(template, invoker, host=HOST, port=port).start()
            running.callback(api.stop)
            print(
                _summary(
                    api=api,
                    bus=bus,
                    scheduler=scheduler,
                    database_url=services.database_url,
                    redis_url=services.redis_url,
                    token=admin_token,
                    webhook_signing_key=webhook_signing_key,
                    alchemy=f"local stub {alchemy_stub_url}" if alchemy_stub_url else "Alchemy (ALCHEMY_API_KEY)",
                    neynar=f"local stub {neynar_stub_url}" if neynar_stub_url else "Neynar (NEYNAR_API_KEY)",
                ),
                flush=True,
            )
            if alchemy_stub_url:
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
