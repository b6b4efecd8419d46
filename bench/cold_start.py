"""Group ``coldstart``: every function's whole-process cold start, against its library floor and the previous code.

For each function in ``functions/`` a fresh interpreter (the project venv, the Lambda import paths, the
environment ``make dev`` gives the functions) runs ``bench/cold_probe.py``: import of the handler module,
init (``load_settings`` of its settings model, secrets included), the first answer (``lambda_handler``
with a sample event) and a warm second one. The headline number is the **whole process** timed from
outside (spawn to exit, interpreter start-up included), as the issue measures it.

Floor: the same interpreter timing ``import <the client libraries the function really needs>`` (table
``FLOORS``), in the same run, interleaved with the function (A B A B …, rotating) so drift cancels; the
ratio is the median of per-round ratios. Bars: a read function (a public GET, ``READ_FUNCTIONS``) ≤ 1.5x,
every other ≤ 2x. The A/B runs the same probe against ``--vs REF`` checked out into a temporary git
worktree (default: the merge-base with ``main``, or ``HEAD~1`` on ``main`` itself), interleaved too.
Four rounds each; a cheap function gets more (``more_rounds``), until about 2.5 s of samples.

Events: a read function answers a **cache hit** for a seeded collection (the bench re-warms the entry
in-process before each run, untimed: an admin sample such as ``cache_clear`` flushes it); every other
function its ``events/<function>.json`` sample (or the bus sample its rule matches), with the Alchemy
and Neynar stubs, and the local EventBridge bus (``local.bus``) with no consumer behind it. An answer
that is an error (status ≥ 500 or raised) says so in the function's row. Secrets are plain variables,
as in ``make dev`` (``function_environment`` is where a local Secrets extension stand-in would start).

Memory sizes: Lambda's CPU share grows with memory (1,769 MB = one vCPU). ``SIZES_MB`` are emulated with
a cgroup v1 CPU quota (``cpu.cfs_quota_us`` = share * ``cpu.cfs_period_us``) around the probe; without a
writable ``/sys/fs/cgroup/cpu`` the sizes are skipped with a note. ``choose_memory`` states the rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import FUNCTIONS, ROOT
from bench.common import (
    EVENTS,
    BenchEnv,
    Measure,
    Stats,
    forget_containers,
    http_event,
    load_event,
    seed_small_collection,
)
from local.invoker import LOCAL_REGION

GROUP = "coldstart"
PROBE = (Path(__file__).with_name("cold_probe.py")).read_text()
READ_BAR = 1.5
OTHER_BAR = 2.0
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # the token events/*.json carry
WEBHOOK_SIGNING_KEY = "test-webhook-signing-key"  # the key events/alchemy_webhook.json is signed with

# Public GETs: the read path (a cached read's floor is redis + orjson; health and the refresh status
# read PostgreSQL on every request).
READ_FUNCTIONS = (
    "collection_metadata",
    "collection_nfts",
    "collection_traits",
    "collection_nft",
    "nft_owner",
    "owned_nfts",
    "refresh_status",
    "user_profile",
    "user_verifications",
    "user_nft_contracts",
    "user_nft_contracts_normalized",
    "health",
)
CACHED = ("redis", "orjson")
ROWS = ("orjson", "psycopg")
DB = (*CACHED, "psycopg")
# httpx imports its transport (httpcore) on the first ``httpx.Client``, never at ``import httpx``: a function
# that calls an upstream loads both. httpcore in turn imports trio where trio is installed (the dev venv has
# it, for selenium; the layer does not): in the floor, so a measurement here charges it to neither side.
HTTP = ("httpx", "httpcore")
# The client libraries each function's first answer loads to do its work, and nothing more (a row names any
# floor library its first answer did not load: such a floor would flatter the function): JSON always; the
# cache for what reads or writes it; PostgreSQL for rows; httpx for an upstream (Alchemy, Neynar,
# notification URLs); boto3 for EventBridge/SQS.
FLOORS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(READ_FUNCTIONS, CACHED),
    "health": DB,
    "refresh_status": DB,  # the refresh status is read from PostgreSQL on every request (never cached)
    "admin_authorizer": ("orjson",),  # compares a bearer token's hash: nothing else
    # An announcement is recorded in PostgreSQL and sent to the users' notification URLs (httpx).
    "admin_notifications": (*ROWS, *HTTP),
    # A delivery's transfers commit with their events, published right after the commit (EventBridge).
    "alchemy_webhook": (*DB, "boto3"),
    # Every clear publishes cache.cleared to EventBridge after it: boto3 is part of each first answer.
    "cache_clear": (*CACHED, "boto3"),
    # The GET reports the events DLQ's depth, read from SQS (GetQueueAttributes) on every request.
    "cache_metrics": (*DB, "boto3"),
    # Its sample asks for a run that does not exist: the run records are in the cache (404).
    "cache_performance": CACHED,
    "ingest_collection": (*DB, *HTTP, "boto3"),
    # Its usual event is a transfer (one per transfer, against a collection update per refresh), whose
    # invalidation finds the users owning either wallet in PostgreSQL: measured on that event (USUAL_EVENTS).
    "invalidate_cache": DB,
    "miniapp_webhook": (*DB, *HTTP),  # Neynar (the app key, the user), the token in PostgreSQL
    # The migration custom resource: migrations through psycopg, its answer PUT with urllib (stdlib).
    "migrate_database": ROWS,
    "prune_data": ROWS,
    # An idempotent consumer: its first answer builds Powertools' idempotency (the record in the cache),
    # whose package __init__ imports the DynamoDB persistence layer and with it boto3; no import path avoids
    # it short of replacing Powertools' idempotency (ingest_collection's floor has boto3 for its own reasons).
    "notify_transfers": (*DB, "aws_lambda_powertools.utilities.idempotency"),
    # Nothing left to publish (the writers publish right after their commits): the backlog is counted.
    "outbox_relay": ROWS,
    "ownership_actions": ROWS,  # its sample's action reads and writes rows only
    "ownership_stats": ROWS,
    "redrive_dead_letters": (*CACHED, "boto3"),
    # A refresh stamps its cooldown and queues the ingestion's event through the outbox (EventBridge).
    "refresh_collection": (*DB, "boto3"),
    "run_performance_test": CACHED,  # the run's record and samples are in the cache
    "send_notifications": (*ROWS, *HTTP),
    "verify_ownership": (*ROWS, *HTTP),
    "warm_cache": DB,  # its sample's collection is stored: warmed from PostgreSQL, no upstream call
}
# Emulated memory sizes and the functions measured at each (the read path and a few others).
SIZES_MB = (512, 1024, 1769)
ONE_VCPU_MB = 1769
SIZED_FUNCTIONS = (*READ_FUNCTIONS, "invalidate_cache", "alchemy_webhook", "outbox_relay", "admin_authorizer")
# The rule: the smallest size whose cold start (whole process, the fastest of the runs: the least
# disturbed by other load) is within COLD_START_TARGET_MS for a function a caller waits on (an HTTP
# route or the authorizer), or BACKGROUND_TARGET_MS for a consumer or schedule, where nobody waits.
# Lambda bills memory x duration: a cached read's warm answer (< 1 ms, billed as 1 ms) costs in
# proportion to the size, so no function gets more than its cold start needs.
COLD_START_TARGET_MS = 1000.0
BACKGROUND_TARGET_MS = 3000.0
BACKGROUND = (
    "ingest_collection",
    "invalidate_cache",
    "notify_transfers",
    "outbox_relay",
    "redrive_dead_letters",
    "run_performance_test",
    "send_notifications",
    "verify_ownership",
)


def bar_of(function: str) -> float:
    return READ_BAR if function in READ_FUNCTIONS else OTHER_BAR


# -- trees and programs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    """A checkout whose ``functions/`` and ``layers/shared`` are measured."""

    label: str
    root: Path

    def has(self, function: str) -> bool:
        return (self.root / "functions" / function / f"{function}.py").is_file()


@dataclass(frozen=True)
class Program:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path


def probe(tree: Tree, function: str, event: Path, base_env: dict[str, str]) -> Program:
    """The probe of ``function`` in ``tree``: Lambda's paths (its code dir, the layer), its cwd (/var/task)."""
    env = dict(base_env)
    env["PYTHONPATH"] = os.pathsep.join([str(tree.root / "functions" / function), str(tree.root / "layers/shared")])
    return Program((sys.executable, "-c", PROBE, function, str(event)), env, tree.root / "functions" / function)


def floor(libraries: Sequence[str], base_env: dict[str, str]) -> Program:
    """``python -c "import <libraries>"``, leaving as the probe does (``os._exit``, no teardown)."""
    code = f"import {', '.join(libraries)}; import os; os._exit(0)"
    env = dict(base_env)
    env.pop("PYTHONPATH", None)
    return Program((sys.executable, "-c", code), env, FUNCTIONS)


@dataclass
class Sample:
    """One run: wall time from spawn to exit, the CPU time the process used (user + system: what a
    quota throttles, and less disturbed than wall time by other load), the probe's report."""

    total_ms: float
    cpu_ms: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def run_program(program: Program, *, cgroup: Path | None = None) -> Sample:
    """Run ``program`` once; wall time from spawn to exit (ms), and the probe's JSON report if any."""

    def enter_cgroup() -> None:  # in the child, before exec: all of its start-up runs under the quota
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    # The bench's only child that ends meanwhile: the servers it started run on, the warmers run in-process.
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter_ns()
    done = subprocess.run(  # noqa: S603 - our own interpreter and programs
        program.argv,
        env=program.env,
        cwd=program.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=enter_cgroup if cgroup is not None else None,
        check=False,
    )
    total_ms = (time.perf_counter_ns() - started) / 1e6
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"{program.argv[-2:]} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    lines = done.stdout.strip().splitlines()
    return Sample(total_ms, cpu_ms, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {})


def interleave(
    programs: dict[str, Program], *, runs: int, before: Callable[[], None] | None = None
) -> dict[str, list[Sample]]:
    """``runs`` rounds of every program once, the order rotating each round; ``before`` runs untimed
    before every program. Bytecode caches are written beforehand (``compile_tree``)."""
    order = list(programs)
    samples: dict[str, list[Sample]] = {name: [] for name in order}
    for index in range(runs):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            if before is not None:
                before()
            samples[name].append(run_program(programs[name]))
    return samples


def compile_tree(tree: Tree) -> None:
    """Write the tree's bytecode caches, as ``sam build`` ships them: no run pays for compiling."""
    import compileall

    for folder in ("functions", "layers/shared"):
        compileall.compile_dir(tree.root / folder, quiet=1)


MIN_SAMPLED_MS = 2500.0
MAX_ROUNDS = 16


def more_rounds(samples: dict[str, list[Sample]], runs: int) -> int:
    """Rounds to add after the first ``runs`` (none in a smoke run) so that a cheap function is sampled for
    ``MIN_SAMPLED_MS`` in all, up to ``MAX_ROUNDS``: over a floor of ~50 ms (the authorizer's), a few
    milliseconds of noise in one of four rounds would move its ratio by a tenth."""
    if runs < 2:
        return 0
    round_ms = sum(statistics.median(sample.total_ms for sample in runs_of) for runs_of in samples.values())
    return max(0, min(MAX_ROUNDS, math.ceil(MIN_SAMPLED_MS / round_ms)) - runs)


def paired_ratio(a: Sequence[Sample], b: Sequence[Sample]) -> float:
    """The median of per-round ratios (each pair taken side by side, so drift of the machine cancels)."""
    return statistics.median(x.total_ms / y.total_ms for x, y in zip(a, b, strict=True))


def min_ratio(a: Sequence[Sample], b: Sequence[Sample]) -> float:
    """The ratio of the fastest runs: the least disturbed by other load on a shared machine."""
    return min(x.total_ms for x in a) / min(y.total_ms for y in b)


def phase_ms(samples: Sequence[Sample], phase: str) -> float:
    return statistics.median(sample.report.get(f"{phase}_ns", 0) / 1e6 for sample in samples)


def heaviest_imports(program: Program, limit: int = 10) -> list[str]:
    """Evidence for a missed bar: the probe's imports with the most cumulative time (``-X importtime``),
    top-level packages and our own modules, as ``cumulative ms | package``."""
    argv = (program.argv[0], "-X", "importtime", *program.argv[1:])
    done = subprocess.run(argv, env=program.env, cwd=program.cwd, capture_output=True, text=True, check=False)  # noqa: S603
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        package = name.strip()
        if depth <= 1 or package.startswith("such_market"):
            rows.append((int(cumulative), package))
    rows.sort(reverse=True)
    return [f"{micros / 1000:7.1f} ms | {package}" for micros, package in rows[:limit]]


# -- the environment and events the functions see ---------------------------------------------------------
class _NoConsumers:
    """The invoker of a bus that delivers to nobody: publishing functions get the local bus's AWS-shaped
    answers, and no consumer runs in the bench's process while it measures."""

    region = LOCAL_REGION

    def invoke(self, function_id: str, event: object) -> None:
        del function_id, event


@contextlib.contextmanager
def function_environment(env: BenchEnv) -> Iterator[dict[str, str]]:
    """The variables ``make dev`` gives every function (``local.dev.function_environment``), pointed at the
    bench's PostgreSQL and Valkey, the upstream stubs and a local bus without consumers; the sample events'
    admin token and webhook key. Secrets are plain variables (the local runtime drops ``*_SECRET_ARN``)."""
    from local.alchemy_stub import AlchemyStub
    from local.bus import LocalEventBus
    from local.dev import EVENT_BUS_NAME
    from local.dev import function_environment as dev_environment
    from local.neynar_stub import NeynarStub
    from local.template import Template

    template = Template.load(ROOT / "template.yaml")
    bus = LocalEventBus(template, _NoConsumers(), bus_name=EVENT_BUS_NAME, quiet=True).start()  # type: ignore[arg-type]
    try:
        with AlchemyStub() as alchemy, NeynarStub() as neynar:
            variables = dev_environment(  # noqa: S604 - `shell` is the user's environment, no shell runs
                template,
                shell={"POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO")},
                database_url=env.database_url,
                redis_url=env.redis_url,
                bus_url=bus.url,
                admin_token=ADMIN_TOKEN,
                webhook_signing_key=WEBHOOK_SIGNING_KEY,
                alchemy_stub=alchemy,
                neynar_stub=neynar,
            )
            with _secrets_extension(variables) as secret_variables:
                # The bench's own environment minus every secret, plain or referenced: the stand-in serves them.
                base = {
                    name: value
                    for name, value in os.environ.items()
                    if not name.endswith("_SECRET_ARN") and name not in {*_SECRETS, "ADMIN_TOKEN"}
                }
                yield {**base, **secret_variables}
    finally:
        bus.stop()


_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:such-market/{}-AbCdEf"
_SECRETS = ("ALCHEMY_API_KEY", "NEYNAR_API_KEY", "ALCHEMY_WEBHOOK_SIGNING_KEY")


@contextlib.contextmanager
def _secrets_extension(variables: dict[str, str]) -> Iterator[dict[str, str]]:
    """``variables`` with the secrets moved behind a stand-in of the Parameters and Secrets extension, as on
    AWS: each plain key becomes its ``*_SECRET_ARN`` (the admin token: its SHA-256, as deployed), served by
    ``local.secrets_extension`` with the extension's few milliseconds of latency."""
    from local.secrets_extension import SecretsExtension

    moved = {name: variables[name] for name in _SECRETS if variables.get(name)}
    served = {_SECRET_ARN.format(name.lower()): value for name, value in moved.items()}
    references = {f"{name}_SECRET_ARN": _SECRET_ARN.format(name.lower()) for name in moved}
    if variables.get("ADMIN_TOKEN"):
        admin = _SECRET_ARN.format("admin-token")
        served[admin] = hashlib.sha256(variables["ADMIN_TOKEN"].encode()).hexdigest()
        references["ADMIN_TOKEN_SECRET_ARN"] = admin
    kept = {name: value for name, value in variables.items() if name not in {*moved, "ADMIN_TOKEN"}}
    with SecretsExtension(token=f"bench-session-{os.getpid()}", secrets=served) as extension:
        yield {**kept, **references, **extension.lambda_environment()}


def read_events(address: str) -> dict[str, dict[str, Any]]:
    """A cache-hit event for each collection read: the seeded collection, its token 1."""
    base = f"/api/collection/{address}"
    param = {"contractAddress": address}
    token = {**param, "tokenId": "1"}
    wallet = load_event("owned_nfts")["queryStringParameters"]["userAddress"]
    return {
        "collection_metadata": http_event("/api/collection/{contractAddress}", base, param),
        "collection_nfts": http_event("/api/collection/{contractAddress}/nfts", f"{base}/nfts", param),
        "collection_traits": http_event("/api/collection/{contractAddress}/traits", f"{base}/traits", param),
        "collection_nft": http_event("/api/collection/{contractAddress}/nfts/{tokenId}", f"{base}/nfts/1", token),
        "nft_owner": http_event(
            "/api/collection/{contractAddress}/nfts/{tokenId}/owner", f"{base}/nfts/1/owner", token
        ),
        "owned_nfts": http_event(
            "/api/collection/{contractAddress}/nfts/owned", f"{base}/nfts/owned", param, {"userAddress": wallet}
        ),
        "refresh_status": http_event("/api/collection/{contractAddress}/refresh", f"{base}/refresh", param),
    }


@contextlib.contextmanager
def _response_url() -> Iterator[str]:
    """A stand-in for CloudFormation's presigned response URL that accepts every PUT (the sample event's
    own URL refuses connections, so the first answer would be the custom resource's retries)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Accepting(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # the base class names it "format"
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accepting)
    thread = threading.Thread(target=server.serve_forever, name="coldstart-response-url", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cloudformation-response"
    finally:
        server.shutdown()
        server.server_close()


USUAL_EVENTS = {"invalidate_cache": "event_nft_transferred"}
"""The sample a consumer's first answer is measured on, where its rules match several: the one it sees most."""


def sample_event(function: str) -> dict[str, Any]:
    """``events/<function>.json``, the function's usual bus sample (``USUAL_EVENTS``), else the first bus
    sample one of the function's rules matches."""
    if (EVENTS / f"{function}.json").is_file():
        return load_event(function)
    if function in USUAL_EVENTS:
        return load_event(USUAL_EVENTS[function])
    from local.bus import matches_pattern
    from local.template import Template

    template = Template.load(ROOT / "template.yaml")
    ids = [fid for fid, spec in template.functions.items() if spec.handler_module == function]
    for path in sorted(EVENTS.glob("event_*.json")):
        event = json.loads(path.read_text())
        if any(rule.function_id in ids and matches_pattern(rule.pattern, event) for rule in template.rules):
            return dict(event)
    raise LookupError(f"no sample event for {function}")


def renewer(function: str, event: dict[str, Any], path: Path, database_url: str) -> Callable[[], None] | None:
    """For a function whose sample would be a duplicate after its first run, what to do before each program
    so that it is not: consumers are idempotent on the ``eventId`` and the Alchemy webhook on its delivery id
    and on each transfer (the event file, ``path``, is rewritten with a fresh copy); a collection refresh is
    throttled for 5 minutes after one (its cooldown is lifted in the bench database). So every measured
    first answer does the function's work (commits, publishes), never a duplicate's shortcut or a 429.
    None for any other sample."""
    if function == "alchemy_webhook":
        return lambda: path.write_text(json.dumps(_fresh_delivery(event)))
    if function == "refresh_collection":
        return lambda: _lift_refresh_cooldown(database_url, event["pathParameters"]["contractAddress"])
    detail = event.get("detail")
    if isinstance(detail, dict) and "eventId" in detail:

        def renew() -> None:
            fresh = {**event, "id": str(uuid.uuid4()), "detail": {**detail, "eventId": str(uuid.uuid4())}}
            path.write_text(json.dumps(fresh))

        return renew
    return None


def _lift_refresh_cooldown(database_url: str, address: str) -> None:
    """The collection as if its last refresh had finished long ago: no cooldown, its ingestion complete."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE collections SET refresh_cooldown_until = NULL, ingestion_state = 'complete' "
            "WHERE contract_address = %s",
            (address.lower(),),
        )


_DELIVERIES = itertools.count(1)


def _fresh_delivery(event: dict[str, Any]) -> dict[str, Any]:
    """The webhook sample as a new delivery: its own id, each transfer in a new transaction of a later block
    (so none is stale), each ERC-721 transfer of a new token (a mint is a new owner), signed again."""
    from local.send_webhook import signature

    body = json.loads(event["body"])
    run = next(_DELIVERIES)
    body["id"] = f"whevt_bench{run}_{uuid.uuid4().hex[:8]}"
    for activity in body["event"]["activity"]:
        tx_hash, block = "0x" + secrets.token_hex(32), hex(int(activity["blockNum"], 16) + run)
        activity |= {"hash": tx_hash, "blockNum": block}
        if "erc721TokenId" in activity:
            activity["erc721TokenId"] = hex(secrets.randbits(64))
        if isinstance(activity.get("log"), dict):
            activity["log"] |= {"transactionHash": tx_hash, "blockNumber": block}
    raw = json.dumps(body).encode()
    return {
        **event,
        "body": raw.decode(),
        "headers": {**event["headers"], "x-alchemy-signature": signature(raw, WEBHOOK_SIGNING_KEY)},
    }


@contextlib.contextmanager
def patched_environ(variables: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def warmer(function: str, event: dict[str, Any]) -> Callable[[], None]:
    """Answer ``event`` in the bench's process (untimed): the entry the probe's first answer hits."""
    import importlib

    from bench.common import FakeContext

    handler = importlib.import_module(function).lambda_handler

    def warm() -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its metric lines are no part of the report
            handler(event, FakeContext())

    return warm


# -- the A/B tree ---------------------------------------------------------------------------------------
def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(("git", "-C", str(ROOT), *args), capture_output=True, text=True, check=check)  # noqa: S603, S607 - git on PATH


def default_ref() -> str:
    """The merge-base with ``main`` when HEAD is past it (a branch), else ``HEAD~1``."""
    head = _git("rev-parse", "HEAD").stdout.strip()
    base = _git("merge-base", "HEAD", "main", check=False)
    if base.returncode == 0 and base.stdout.strip() and base.stdout.strip() != head:
        return base.stdout.strip()
    return "HEAD~1"


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Tree]:
    """``ref`` in a temporary detached git worktree (removed afterwards)."""
    commit = _git("rev-parse", "--short", f"{ref}^{{commit}}").stdout.strip()
    where = Path(tempfile.mkdtemp(prefix="coldstart-vs-"))
    _git("worktree", "add", "--detach", str(where / "tree"), commit)
    try:
        yield Tree(f"{ref} ({commit})" if ref != commit else commit, where / "tree")
    finally:
        _git("worktree", "remove", "--force", str(where / "tree"), check=False)
        shutil.rmtree(where, ignore_errors=True)


# -- CPU quotas -----------------------------------------------------------------------------------------
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


@contextlib.contextmanager
def cpu_quota(memory_mb: int) -> Iterator[Path]:
    """A cgroup v1 ``cpu`` child whose quota is Lambda's CPU share at ``memory_mb`` (1,769 MB = 1 vCPU).
    Raises ``OSError`` when the controller is not there or not writable."""
    period = 100_000
    group = CGROUP_CPU / f"such-market-bench-{os.getpid()}-{memory_mb}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(round(period * memory_mb / ONE_VCPU_MB)))
        yield group
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def choose_memory(function: str, cold_ms: dict[int, float]) -> int:
    """The smallest emulated size whose cold start meets the function's target (a route: a caller waits;
    a consumer or schedule: nobody does), else the largest."""
    target = BACKGROUND_TARGET_MS if function in BACKGROUND else COLD_START_TARGET_MS
    for size in SIZES_MB:
        if cold_ms.get(size, float("inf")) <= target:
            return size
    return SIZES_MB[-1]


# -- the group ------------------------------------------------------------------------------------------
def _answer(report: dict[str, Any], floor_libraries: Sequence[str]) -> str:
    """What the first answer was: its status (``ok`` for a non-HTTP handler) and ``X-Cache``, or the error;
    the heavy libraries the process had loaded by then; and any library of its floor it never loaded (a
    floor that flatters the function: ``FLOORS`` names what the first answer needs, no more)."""
    status = report.get("status")
    answer = ("ok" if status is None else f"{status}") + (f" {report['cache']}" if report.get("cache") else "")
    if report.get("error"):
        answer = f"error: {report['error'][:80]}"
    elif isinstance(status, int) and status >= 500:
        answer = f"error {status}"
    heavy = [
        name for name in ("boto3", "botocore", "pydantic_settings") if name in report.get("heavy_after_answer", [])
    ]
    loaded = set(report.get("loaded_after_answer", []))
    unused = [name for name in floor_libraries if loaded and name.partition(".")[0] not in loaded]
    return (
        answer
        + (f" (loads {', '.join(heavy)})" if heavy else "")
        + (f" (floor not loaded: {', '.join(unused)})" if unused else "")
    )


def run(env: BenchEnv, *, quick: bool, vs: str | None = None, functions: Sequence[str] = ()) -> list[Measure]:
    runs = 1 if quick else 4
    forget_containers()  # the bench's own process answers the warming calls under the functions' variables
    address = seed_small_collection(env)
    hits = read_events(address)
    chosen = functions
    functions = sorted(path.name for path in FUNCTIONS.iterdir() if (path / f"{path.name}.py").is_file())
    if chosen:
        missing = sorted(set(chosen) - set(functions))
        if missing:
            raise LookupError(f"no such function(s): {', '.join(missing)}")
        functions = sorted(chosen)
    unknown = [function for function in functions if function not in FLOORS]
    if unknown:
        raise LookupError(f"no library floor defined for {unknown}: add them to FLOORS")
    measures: list[Measure] = []
    current = Tree("this tree", ROOT)
    with contextlib.ExitStack() as stack:
        variables = stack.enter_context(function_environment(env))
        stack.enter_context(patched_environ(variables))
        events_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coldstart-events-")))
        previous = None if quick and vs is None else stack.enter_context(checkout(vs or default_ref()))
        for tree in (current, previous):
            if tree is not None:
                compile_tree(tree)
        answers = {function: hits.get(function) or sample_event(function) for function in functions}
        if "migrate_database" in answers:  # its answer goes to CloudFormation's response URL: a local one
            answers["migrate_database"] = {
                **answers["migrate_database"],
                "ResponseURL": stack.enter_context(_response_url()),
            }
        events: dict[str, Path] = {}
        for function, event in answers.items():
            events[function] = events_dir / f"{function}.json"
            events[function].write_text(json.dumps(event))
        # A read's first answer is a hit: its entry is (re)filled in-process before each run. Any other
        # function whose sample would be a duplicate after one run gets a fresh copy of it before each run.
        warmers = {function: warmer(function, answers[function]) for function in READ_FUNCTIONS if function in answers}
        for function, event in answers.items():
            renew = renewer(function, event, events[function], env.database_url)
            if renew is not None:
                warmers[function] = renew
        for function in functions:
            measures.append(
                _measure(
                    function,
                    current,
                    previous,
                    events,
                    variables,
                    runs=runs,
                    warm=warmers.get(function),
                    evidence=not quick,
                )
            )
        if not chosen:  # a subset is a quick look at a few functions, not a sizing run
            measures += _memory_sizes(current, events, variables, warmers=warmers, quick=quick)
    return measures


def _measure(
    function: str,
    current: Tree,
    previous: Tree | None,
    events: dict[str, Path],
    variables: dict[str, str],
    *,
    runs: int,
    warm: Callable[[], None] | None,
    evidence: bool,
) -> Measure:
    programs = {
        "floor": floor(FLOORS[function], variables),
        "new": probe(current, function, events[function], variables),
    }
    if previous is not None and previous.has(function):
        programs["old"] = probe(previous, function, events[function], variables)
    samples = interleave(programs, runs=runs, before=warm)
    for name, more in interleave(programs, runs=more_rounds(samples, runs), before=warm).items():
        samples[name] += more
    ratio = paired_ratio(samples["new"], samples["floor"])
    fastest = min_ratio(samples["new"], samples["floor"])
    cpu_ratio = statistics.median(sample.cpu_ms for sample in samples["new"]) / statistics.median(
        sample.cpu_ms for sample in samples["floor"]
    )
    bar = bar_of(function)
    stats = Stats.of_ms([sample.total_ms for sample in samples["new"]])
    floor_stats = Stats.of_ms([sample.total_ms for sample in samples["floor"]])
    phases = {phase: phase_ms(samples["new"], phase) for phase in ("import", "init", "first", "warm")}
    vs_old = paired_ratio(samples["new"], samples["old"]) if "old" in samples else None
    kind = "read" if function in READ_FUNCTIONS else "other"
    row = {
        "function": f"{function} ({kind})",
        "import ms": f"{phases['import']:.0f}",
        "init ms": f"{phases['init']:.1f}",
        "first answer ms": f"{phases['first']:.1f}",
        "warm ms": f"{phases['warm']:.2f}",
        "total ms (min)": f"{stats.p50_ms:.0f} ({stats.min_ms:.0f})",
        "floor ms": f"{floor_stats.p50_ms:.0f} {'+'.join(FLOORS[function])}",
        "ratio (bar)": f"**{ratio:.2f}x** (≤ {bar:g}x)",
        "fastest / CPU": f"{fastest:.2f}x / {cpu_ratio:.2f}x",
        f"vs {previous.label if previous else 'previous'}": f"{vs_old:.2f}x" if vs_old is not None else "",
        "first answer": _answer(samples["new"][-1].report, FLOORS[function]),
    }
    extra: dict[str, Any] = {
        "row": row,
        "floor_libraries": list(FLOORS[function]),
        "ratio_of_fastest": round(fastest, 3),
        "ratio_of_cpu_time": round(cpu_ratio, 3),
        "total_ms": [round(sample.total_ms, 2) for sample in samples["new"]],
        "cpu_ms": [round(sample.cpu_ms, 2) for sample in samples["new"]],
        "floor_ms": [round(sample.total_ms, 2) for sample in samples["floor"]],
        "floor_cpu_ms": [round(sample.cpu_ms, 2) for sample in samples["floor"]],
        "phases_ms": {phase: round(value, 3) for phase, value in phases.items()},
        "probe": samples["new"][-1].report,
    }
    if previous is not None and "old" in samples:
        extra |= {
            "vs_ref": previous.label,
            "vs_ratio": round(vs_old or 0.0, 3),
            "vs_total_ms": [round(sample.total_ms, 2) for sample in samples["old"]],
        }
    if ratio > bar and evidence:
        extra["heaviest_imports"] = heaviest_imports(programs["new"])
    return Measure(
        GROUP,
        f"coldstart.{function}",
        f"cold start {function} ({kind}): whole process",
        stats.p50_ms,
        "ms",
        stats=stats,
        bar=f"≤ {bar:g}x floor",
        passed=ratio <= bar,
        ratio=ratio,
        ratio_of=f"floor.{'+'.join(FLOORS[function])}",
        ratio_bar=bar,
        extra=extra,
    )


def _memory_sizes(
    current: Tree,
    events: dict[str, Path],
    variables: dict[str, str],
    *,
    warmers: dict[str, Callable[[], None]],
    quick: bool,
) -> list[Measure]:
    """Cold start and a warm (hit) answer at each emulated memory size; the size the rule picks."""
    chosen = ("collection_nfts", "invalidate_cache") if quick else SIZED_FUNCTIONS
    runs = 1 if quick else 2
    measures: list[Measure] = []
    try:
        quotas = {size: contextlib.ExitStack() for size in SIZES_MB}
        groups = {size: quotas[size].enter_context(cpu_quota(size)) for size in SIZES_MB}
    except OSError as error:
        return [
            Measure(
                GROUP,
                "coldstart.memory",
                "memory sizes (CPU quota per size)",
                0,
                "",
                note=f"not measured: no writable cgroup v1 cpu controller at {CGROUP_CPU} ({error})",
            )
        ]
    try:
        for function in chosen:
            program = probe(current, function, events[function], variables)
            warm = warmers.get(function)
            samples: dict[int, list[Sample]] = {size: [] for size in SIZES_MB}
            for index in range(runs):  # the sizes interleaved, rotating, as the A/B is
                shift = index % len(SIZES_MB)
                for size in SIZES_MB[shift:] + SIZES_MB[:shift]:
                    if warm is not None:
                        warm()
                    samples[size].append(run_program(program, cgroup=groups[size]))
            cold = {size: min(sample.total_ms for sample in samples[size]) for size in SIZES_MB}
            answer = {size: phase_ms(samples[size], "warm") for size in SIZES_MB}
            cpu = {size: min(sample.cpu_ms for sample in samples[size]) for size in SIZES_MB}
            pick = choose_memory(function, cold)
            row = {"function (MemorySize)": function}
            row |= {
                f"{size} MB: cold ms (CPU) / warm ms": f"{cold[size]:.0f} ({cpu[size]:.0f}) / {answer[size]:.2f}"
                for size in SIZES_MB
            }
            row["chosen"] = f"**{pick} MB**"
            measures.append(
                Measure(
                    GROUP,
                    f"coldstart.memory.{function}",
                    f"MemorySize {function}: cold start (fastest) / warm answer per size",
                    pick,
                    "MB",
                    extra={
                        "row": row,
                        "cold_start_ms": cold,
                        "cpu_ms": cpu,
                        "warm_answer_ms": answer,
                        "chosen_mb": pick,
                    },
                )
            )
    finally:
        for stack in quotas.values():
            stack.close()
    return measures
