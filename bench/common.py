"""Shared machinery of the benchmark groups: timing, result records, services, handler events, seeding.

Timing is ``time.perf_counter_ns`` around each call after a warm-up; a measure reports n, p50, p95,
p99, mean, min and max in milliseconds. Percentiles are nearest-rank over the sorted samples.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bench import ROOT

EVENTS = ROOT / "events"
MIGRATIONS = ROOT / "migrations"
BENCH_DB = "such_market_bench"
CACHE_PREFIX = "such-market"


# -- timing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stats:
    """Latency statistics of one measure, in milliseconds."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of_ns(cls, samples_ns: Sequence[int]) -> Stats:
        ordered = sorted(samples_ns)
        count = len(ordered)
        if count == 0:
            raise ValueError("no samples")

        def rank(fraction: float) -> float:
            index = min(count - 1, max(0, math.ceil(fraction * count) - 1))
            return ordered[index] / 1e6

        return cls(
            n=count,
            p50_ms=rank(0.50),
            p95_ms=rank(0.95),
            p99_ms=rank(0.99),
            mean_ms=sum(ordered) / count / 1e6,
            min_ms=ordered[0] / 1e6,
            max_ms=ordered[-1] / 1e6,
        )

    @classmethod
    def of_ms(cls, samples_ms: Sequence[float]) -> Stats:
        return cls.of_ns([int(sample * 1e6) for sample in samples_ms])


def time_calls(
    call: Callable[[], object],
    *,
    n: int,
    warmup: int,
    before: Callable[[], object] | None = None,
    budget_s: float | None = None,
    min_n: int = 20,
) -> Stats:
    """Time ``n`` calls of ``call`` after ``warmup`` untimed ones; ``before`` runs untimed before each.

    With ``budget_s``, stop early once that much time has been spent timing and at least ``min_n``
    samples were taken, and end the warm-up after a quarter of it (at least 3 calls): slow cases keep the
    run within its time budget, with fewer samples (``Stats.n`` says how many).
    """
    clock = time.perf_counter_ns
    warm_until = clock() + int(budget_s * 0.25e9) if budget_s is not None else None
    for done in range(warmup):
        if before is not None:
            before()
        call()
        if warm_until is not None and done >= 2 and clock() > warm_until:
            break
    gc.collect()
    samples: list[int] = []
    deadline = clock() + int(budget_s * 1e9) if budget_s is not None else None
    for index in range(n):
        if before is not None:
            before()
        start = clock()
        call()
        end = clock()
        samples.append(end - start)
        if deadline is not None and end > deadline and index + 1 >= min_n:
            break
    return Stats.of_ns(samples)


BlockRunner = Callable[[int], list[int]]


def sync_block(call: Callable[[], object]) -> BlockRunner:
    """A block runner timing ``k`` consecutive calls of ``call`` (nanoseconds each)."""

    def run(k: int) -> list[int]:
        clock = time.perf_counter_ns
        samples = [0] * k
        for index in range(k):
            start = clock()
            call()
            samples[index] = clock() - start
        return samples

    return run


@dataclass(frozen=True)
class Interleaved:
    """Side-by-side timings: each runner's overall stats, and its median per round (ms)."""

    stats: dict[str, Stats]
    rounds: dict[str, list[float]]

    def paired_ratio(self, name: str, reference: str) -> float:
        """The median over rounds of ``name``'s round median over ``reference``'s: each ratio compares
        blocks timed a fraction of a second apart, so a drift of the machine between rounds cancels."""
        ratios = [a / b for a, b in zip(self.rounds[name], self.rounds[reference], strict=True) if b > 0]
        return statistics.median(ratios)


def interleaved(runners: dict[str, BlockRunner], *, n: int, warmup: int, block: int = 100) -> Interleaved:
    """Time every runner ``n`` times in alternating blocks of ``block`` calls (rotating the order), so that
    each sees the same machine: on this shared VM the loopback round trip switches between about 0.02 and
    0.10 ms for seconds to minutes at a time, and a ratio is only meaningful between numbers taken side
    by side (see ``Interleaved.paired_ratio``)."""
    for runner in runners.values():
        runner(warmup)
    gc.collect()
    samples: dict[str, list[int]] = {name: [] for name in runners}
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for round_index in range(math.ceil(n / block)):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            got = runners[name](block)
            samples[name].extend(got)
            rounds[name].append(statistics.median(got) / 1e6)
    return Interleaved({name: Stats.of_ns(values) for name, values in samples.items()}, rounds)


# -- results --------------------------------------------------------------------------------------------
@dataclass
class Measure:
    """One line of the report. ``value`` is the headline number (a latency's p50 unless said otherwise);
    ``ratio`` is ``value`` over the reference measure named by ``ratio_of``; ``passed`` is None when the
    measure has no bar of its own (a baseline, a peer, an informational number)."""

    group: str
    name: str
    label: str
    value: float
    unit: str
    stats: Stats | None = None
    bar: str | None = None
    passed: bool | None = None
    ratio: float | None = None
    ratio_of: str | None = None
    ratio_bar: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = asdict(self.stats) if self.stats is not None else None
        return data


def latency(
    group: str,
    name: str,
    label: str,
    stats: Stats,
    *,
    bar_ms: float | None = None,
    reference: Measure | None = None,
    ratio_bar: float | None = None,
    ratio: float | None = None,
    note: str = "",
    **extra: Any,
) -> Measure:
    """A latency measure judged on its p50: ≤ ``bar_ms`` and, with a ``ratio_bar``, ≤ that multiple of
    ``reference`` (``ratio`` when given, e.g. a paired ratio; else p50 over the reference's p50)."""
    if ratio is None and reference is not None and reference.value > 0:
        ratio = stats.p50_ms / reference.value
    checks: list[bool] = []
    bars: list[str] = []
    if bar_ms is not None:
        checks.append(stats.p50_ms <= bar_ms)
        bars.append(f"p50 ≤ {bar_ms:g} ms")
    if ratio_bar is not None and ratio is not None:
        checks.append(ratio <= ratio_bar)
        bars.append(f"≤ {ratio_bar:g}x floor")
    return Measure(
        group=group,
        name=name,
        label=label,
        value=stats.p50_ms,
        unit="ms",
        stats=stats,
        bar=", ".join(bars) or None,
        passed=all(checks) if checks else None,
        ratio=ratio,
        ratio_of=reference.name if reference is not None else None,
        ratio_bar=ratio_bar,
        note=note,
        extra=dict(extra),
    )


# -- services and the environment a handler container sees ---------------------------------------------
def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class BenchEnv:
    """The servers, the bench database (fresh and migrated) and the Lambda environment variables."""

    def __init__(self) -> None:
        import psycopg

        from local.services import start_services
        from such_market.db.migrations import migrate

        self.services = start_services()
        try:
            with psycopg.connect(self.services.database_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{BENCH_DB}" TEMPLATE template0')
            self.database_url = database_url(self.services.database_url, BENCH_DB)
            self.redis_url = self.services.redis_url
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                migrate(conn, MIGRATIONS)
            self._set_lambda_environment()
        except BaseException:
            self.services.stop()
            raise
        self._seeded: dict[str, Any] = {}

    def _set_lambda_environment(self) -> None:
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_CLUSTER": "false",
            "CACHE_PREFIX": CACHE_PREFIX,
            "EVENT_BUS_NAME": "such-market",
            # Never called: every collection the bench reads is stored and fully indexed.
            "ALCHEMY_API_KEY": "bench-key",
            "ALCHEMY_BASE_URL": "http://127.0.0.1:9",
            "POWERTOOLS_SERVICE_NAME": "such-market",
            # The template's default level: whatever the read path logs at INFO is part of its cost.
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": "SuchMarket",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        for name in (
            "DB_SECRET_ARN",
            "ADMIN_TOKEN_SECRET_ARN",
            "ALCHEMY_API_KEY_SECRET_ARN",
            "EVENTBRIDGE_ENDPOINT_URL",
        ):
            os.environ.pop(name, None)
        os.environ.update(env)

    @property
    def cache_allocator(self) -> str:
        """The allocator the bench's Valkey runs on: the embedded one's, or "external" (``REDIS_URL``)."""
        from local.services import EmbeddedValkey

        embedded = [server for server in self.services.started if isinstance(server, EmbeddedValkey)]
        return embedded[0].allocator if embedded else "external"

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.database_url, autocommit=True)

    def redis(self, **options: Any) -> Any:
        """A fresh single-connection redis-py client (the floor's client, and the bench's own)."""
        import redis

        return redis.Redis.from_url(self.redis_url, single_connection_client=True, **options)

    def flush_cache(self) -> None:
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    def once(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``name`` is asked for, its stored result afterwards (seeded data)."""
        if name not in self._seeded:
            self._seeded[name] = make()
        return self._seeded[name]

    def close(self) -> None:
        forget_containers()
        self.services.stop()


def forget_containers() -> None:
    """Drop every per-container client and cached setting, as a fresh Lambda container would have none."""
    from such_market.container import close_all

    close_all()


# -- Lambda invocation ----------------------------------------------------------------------------------
class FakeContext:
    """The attributes of a LambdaContext our handlers read."""

    function_name = "bench-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-function"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def load_event(name: str) -> dict[str, Any]:
    """A copy of ``events/<name>.json``."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def http_event(route_key: str, path: str, path_parameters: dict[str, str], query: dict[str, str] | None = None) -> Any:
    """An HTTP API payload 2.0 GET event shaped like ``events/health.json``."""
    event = copy.deepcopy(load_event("health"))
    event["routeKey"] = f"GET {route_key}"
    event["rawPath"] = path
    event["rawQueryString"] = urlencode(query or {})
    event["pathParameters"] = dict(path_parameters)
    if query:
        event["queryStringParameters"] = dict(query)
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["routeKey"] = event["routeKey"]
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event


# -- seeding --------------------------------------------------------------------------------------------
SMALL_COLLECTION = "0x" + "b1" * 20
BIG_COLLECTION = "0x" + "b2" * 20

RARITIES = ("Common", "Uncommon", "Rare", "Legendary")  # 70 %, 20 %, 8 %, 2 %


def nft_fields(token_id: int) -> dict[str, Any]:
    """The display fields of a bench token: sizes like a typical PFP collection's."""
    cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    return {
        "title": f"Bench Ape #{token_id}",
        "description": "A benchmark token: one of many generated apes, with four traits of skewed rarity.",
        "image_url": f"https://ipfs.io/ipfs/{cid}/{token_id}.png",
        "thumbnail_url": f"https://res.cloudinary.com/alchemyapi/image/upload/thumbnailv2/eth-mainnet/{token_id}",
    }


def small_attributes(token_id: int) -> list[dict[str, str]]:
    return [
        {"trait_type": "Rarity", "value": RARITIES[min(3, token_id % 10 // 3)]},
        {"trait_type": "Background", "value": f"Background {token_id % 8}"},
        {"trait_type": "Eyes", "value": f"Eyes {token_id % 20}"},
        {"trait_type": "Hat", "value": f"Hat {token_id % 50}"},
    ]


def index_collection(conn: Any, metadata: Any, records: list[Any]) -> None:
    """Store ``metadata`` and ``records`` the way a completed ingestion leaves them: traits, positions, state."""
    from such_market.collections.writes import (
        assign_positions,
        rebuild_traits,
        set_ingestion_state,
        upsert_collection,
        upsert_nfts,
    )

    row = upsert_collection(conn=conn, metadata=metadata)
    upsert_nfts(conn=conn, collection_id=row.id, nfts=records)
    rebuild_traits(conn=conn, collection_id=row.id)
    assign_positions(conn=conn, collection_id=row.id)
    set_ingestion_state(conn=conn, collection_id=row.id, state="complete", nfts_indexed=len(records), owners_indexed=0)


def seed_small_collection(env: BenchEnv, tokens: int = 200) -> str:
    """An indexed ERC-721 collection of ``tokens`` tokens through the write API; returns its address."""
    from such_market.collections.writes import CollectionMetadata, NftRecord

    def make() -> str:
        with env.connect() as conn:
            metadata = CollectionMetadata(
                contract_address=SMALL_COLLECTION,
                name="Bench Apes",
                symbol="BAPE",
                token_type="ERC721",
                total_supply=tokens,
                image_url="https://ipfs.io/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/logo.png",
                description="The benchmark collection: small, fully indexed, four trait types.",
                verified=True,
            )
            records = [NftRecord(token_id=i, attributes=small_attributes(i), **nft_fields(i)) for i in range(tokens)]
            index_collection(conn, metadata, records)
        return SMALL_COLLECTION

    address: str = env.once("small", make)
    return address


_BIG_TOKENS_SQL = """
CREATE TEMP TABLE bench_tokens AS
SELECT i AS token_id,
       (ARRAY['Common', 'Uncommon', 'Rare', 'Legendary'])[
           CASE WHEN r1 < 0.70 THEN 1 WHEN r1 < 0.90 THEN 2 WHEN r1 < 0.98 THEN 3 ELSE 4 END] AS rarity,
       'Background ' || floor(8 * r2 * r2)::int AS background,
       'Eyes ' || floor(20 * r3 * r3)::int AS eyes,
       'Hat ' || floor(50 * r4 * r4 * r4)::int AS hat
FROM (
    SELECT i, random() AS r1, random() AS r2, random() AS r3, random() AS r4
    FROM generate_series(1, %(tokens)s) AS i
) AS g
"""

_BIG_NFTS_SQL = """
INSERT INTO nfts (collection_id, token_id, title, description, image_url, thumbnail_url, attributes)
SELECT %(collection_id)s, token_id, 'Bench Ape #' || token_id,
       'A benchmark token: one of many generated apes, with four traits of skewed rarity.',
       'https://ipfs.io/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/' || token_id || '.png',
       'https://res.cloudinary.com/alchemyapi/image/upload/thumbnailv2/eth-mainnet/' || token_id,
       jsonb_build_array(
           jsonb_build_object('trait_type', 'Rarity', 'value', rarity),
           jsonb_build_object('trait_type', 'Background', 'value', background),
           jsonb_build_object('trait_type', 'Eyes', 'value', eyes),
           jsonb_build_object('trait_type', 'Hat', 'value', hat))
FROM bench_tokens
ORDER BY token_id
"""

_BIG_TRAITS_SQL = """
INSERT INTO nft_traits (collection_id, token_id, trait_type, trait_value)
SELECT %(collection_id)s, t.token_id, v.trait_type, v.trait_value
FROM bench_tokens AS t
CROSS JOIN LATERAL (VALUES ('Rarity', t.rarity), ('Background', t.background), ('Eyes', t.eyes), ('Hat', t.hat))
    AS v(trait_type, trait_value)
"""


def generate_tokens(conn: Any, collection_id: uuid.UUID, tokens: int) -> None:
    """Insert ``tokens`` generated tokens (ids 1..tokens, four trait types of skewed values, the same
    draw every time) with their ``nft_traits`` rows into the collection, in one transaction."""
    params = {"collection_id": collection_id, "tokens": tokens}
    with conn.transaction():
        conn.execute("SELECT setseed(0.42)")
        conn.execute(_BIG_TOKENS_SQL, params)
        conn.execute(_BIG_NFTS_SQL, params)
        conn.execute(_BIG_TRAITS_SQL, params)
        conn.execute("DROP TABLE bench_tokens")


@dataclass(frozen=True)
class BigCollection:
    address: str
    collection_id: uuid.UUID
    tokens: int
    seconds_to_seed: float
    seed_steps_s: dict[str, Any]


def seed_big_collection(env: BenchEnv, tokens: int = 100_000) -> BigCollection:
    """A fully indexed 100k-token collection: generated rows (INSERT … SELECT generate_series), then the
    write API's ``rebuild_traits`` and ``assign_positions``, then CHECKPOINT and VACUUM ANALYZE (the steady
    state autovacuum reaches in production: statistics and an all-visible visibility map)."""
    from such_market.collections.writes import (
        CollectionMetadata,
        assign_positions,
        rebuild_traits,
        set_ingestion_state,
        upsert_collection,
    )

    def make() -> BigCollection:
        steps: dict[str, Any] = {}
        started = time.perf_counter()
        with env.connect() as conn:
            # Synchronous commits for the load: the embedded server commits asynchronously, and until
            # a commit's WAL is flushed no hint bit (and so no all-visible bit) can be set for its rows.
            conn.execute("SET synchronous_commit = on")
            row = upsert_collection(
                conn=conn,
                metadata=CollectionMetadata(
                    contract_address=BIG_COLLECTION, name="Bench Apes XL", symbol="BAPX", token_type="ERC721"
                ),
            )
            with step(steps, "generate"):
                generate_tokens(conn, row.id, tokens)
            with step(steps, "rebuild_traits"):
                rebuild_traits(conn=conn, collection_id=row.id)
            with step(steps, "assign_positions"):
                assign_positions(conn=conn, collection_id=row.id)
            set_ingestion_state(
                conn=conn, collection_id=row.id, state="complete", nfts_indexed=tokens, owners_indexed=0
            )
        with step(steps, "vacuum_analyze"), env.connect() as conn:
            steps["all_visible_pages"] = _vacuum_until_all_visible(conn, ("nfts", "nft_traits", "collection_traits"))
        return BigCollection(BIG_COLLECTION, row.id, tokens, time.perf_counter() - started, steps)

    made: BigCollection = env.once("big", make)
    return made


def _vacuum_until_all_visible(conn: Any, tables: Sequence[str], attempts: int = 10) -> dict[str, str]:
    """VACUUM ANALYZE ``tables`` until their visibility maps are complete (the steady state index-only
    scans rely on), after a CHECKPOINT. VACUUM marks a page all-visible only once its rows' commits are
    flushed to the WAL (hint bits), which the embedded server (``synchronous_commit=off``) does lazily:
    the load commits synchronously, and this retries briefly in case some commit still is not flushed."""
    state: dict[str, str] = {}
    for _ in range(attempts):
        conn.execute("CHECKPOINT")
        for table in tables:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        rows = conn.execute(
            "SELECT relname, relpages, relallvisible FROM pg_class WHERE relname = ANY(%s)", (list(tables),)
        ).fetchall()
        state = {name: f"{visible}/{pages}" for name, pages, visible in rows}
        if all(visible >= pages for _, pages, visible in rows):
            break
        time.sleep(0.5)
    return state


@contextmanager
def step(record: dict[str, Any], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        record[name] = round(time.perf_counter() - started, 3)


# -- evidence for a missed bar --------------------------------------------------------------------------
def profile_top(call: Callable[[], object], *, n: int, limit: int = 14, focus: str | None = None) -> list[str]:
    """cProfile ``n`` calls of ``call``: the functions with the most cumulative time, then those with the
    most own time, one line each as ``cumulative ms | own ms | calls (all per call) | function``; with
    ``focus``, only functions whose file path contains it. cProfile inflates every call; read the
    shares, not the absolute numbers."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows: list[tuple[float, float, float, str]] = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.replace(str(ROOT) + "/", "")
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        if focus is None or focus in where:
            rows.append((cumulative / n * 1e3, own / n * 1e3, calls / n, f"{where}:{line}({function})"))

    def render(row: tuple[float, float, float, str]) -> str:
        cumulative, own, calls, name = row
        return f"{cumulative:7.4f} ms cum | {own:7.4f} ms own | {calls:6.1f}x | {name}"

    by_cumulative = sorted(rows, reverse=True)[:limit]
    by_own = sorted(rows, key=lambda row: row[1], reverse=True)[: max(4, limit // 2)]
    return ["by cumulative time:", *map(render, by_cumulative), "by own time:", *map(render, by_own)]


def explain_plans(conn: Any, call: Callable[[], object], *, max_lines: int = 40) -> list[str]:
    """The ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement ``call`` runs on ``conn``, captured with
    auto_explain (its log lines reach the client as notices); at most ``max_lines`` lines per plan."""
    plans: list[str] = []

    def collect(diagnostic: Any) -> None:
        message = diagnostic.message_primary or ""
        if "Query Text:" in message or "Plan" in message or "->" in message:
            plans.extend(message.splitlines()[:max_lines])

    settings = (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_buffers = on",
        "SET client_min_messages = log",
    )
    for statement in settings:
        conn.execute(statement)
    conn.add_notice_handler(collect)
    try:
        call()
    finally:
        conn.remove_notice_handler(collect)
        conn.execute("SET auto_explain.log_min_duration = -1")
        conn.execute("RESET client_min_messages")
    return plans
