"""Group ``ownership``: ownership sync with statement-level summaries vs row-level triggers, and the
normalized tables vs the predecessor's JSONB ``user_nft_cache`` (storage, and the two wallet/collection
questions).

Everything runs in a database of its own (``such_market_bench_ownership``, created fresh and migrated
like the bench database, dropped at the end), so TRUNCATE between repetitions touches nothing else.

Sync (bars: ≤ 5 s for every step, and ≥ 5x faster than row-level triggers doing the same work for the
first load, the sync that writes all 100k rows; a resync writes ~21k of them after diffing all 100k, and
that shared diff caps its whole-call ratio: it is reported with that ceiling, not judged). Two
collections of 100k ``nft_ownership`` rows: an ERC-721 one (100k tokens, 20k wallets, every wallet holds
at least one, the rest skewed towards whales) and an ERC-1155 one (5k token ids x 20 holders, skewed
balances). Each is synced twice with the real bulk path, ``writes.replace_collection_owners`` (COPY into
a temp table, one DELETE, one INSERT … ON CONFLICT): a first load into empty tables, then a resync
(ERC-721: 10 % of the tokens move, 5 % of the moves to new wallets, 1 % burn; ERC-1155: 10 % of the rows
move to a wallet that did not hold the token, 5 % change balance, 1 % burn). The same calls run against a
second copy of the three tables (schema ``bench_rowlevel``: ``CREATE TABLE … (LIKE … INCLUDING ALL)``,
the same storage parameters, the same foreign keys and the same non-summary triggers, copied from the
catalog) whose summaries are maintained by FOR EACH ROW triggers in the predecessor's style (one upsert
or decrement per row and summary, an UPDATE trigger only when owner, collection or balance changed). The
connection's ``search_path`` picks the schema, so both designs run exactly the same Python and SQL.
Timed: the whole ``replace_collection_owners`` call (COPY from Python included), median of ``REPEATS``
runs per design, alternating which design goes first; untimed between runs: TRUNCATE, CHECKPOINT, and
VACUUM ANALYZE between load and resync (autovacuum is off on these tables so that it never lands inside
one design's run). After every load and resync both designs must hold identical ``nft_ownership`` and summaries (and
ours passes ``check_summaries``). One extra run per design and scenario, rolled back, is traced with
auto_explain (``log_analyze``, ``log_triggers``): each statement's time and its triggers' time.

Storage and queries, on a portfolio: the two synced collections plus 48 more ERC-721 collections of
skewed sizes (≈ 370k ``nft_ownership`` rows over ≈ 20k wallets). The JSONB baseline is built from the
same data in schema ``bench_legacy`` with the 0002 DDL, one row per wallet, ``contracts`` = the array of
{address, name, symbol, tokenType, totalBalance, numDistinctTokensOwned, isSpam} (numbers as strings,
as the legacy cache held them), a unique btree on ``wallet_address`` and a GIN ``jsonb_path_ops`` index
on ``contracts`` (what a fair predecessor would add for ``@>``). It holds per-contract counts only, so it
is compared with our summary tables; a second JSONB table whose elements also carry ``tokens`` (an object
token id → balance, the most compact shape) is compared with ``nft_ownership``. Every table is
VACUUM FULL + ANALYZE'd first, so no side carries bloat. Queries (p50/p99; the ratio is baseline over
ours): "which wallets hold collection X" for a collection with ≈ 20k, ≈ 1k and a few holders (ours:
``user_collections`` joined to ``collections`` by address; JSONB: ``contracts @> '[{"address": X}]'``
through GIN, then the element; and a plain ``jsonb_array_elements`` scan), and "which collections does
wallet W hold" for a median wallet and the biggest (ours: ``wallet_collection_mapping`` by wallet; JSONB:
the wallet's row, as text and expanded into the same rows). Every pair is checked to return the same
answer before it is timed.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.common import MIGRATIONS, BenchEnv, Measure, Stats, database_url, latency, time_calls

GROUP = "ownership"
OWNERSHIP_DB = "such_market_bench_ownership"
SYNC_BAR_S = 5.0
SPEEDUP_BAR = 5.0
ROW = "bench_rowlevel"
LEGACY = "bench_legacy"
TABLES = ("nft_ownership", "user_collections", "wallet_collection_mapping")
SUMMARY_FUNCTIONS = ("maintain_ownership_summaries", "clear_ownership_summaries")

Owners = list[tuple[str, int, int]]


# -- data -----------------------------------------------------------------------------------------------
def wallet(index: int) -> str:
    return "0x" + hashlib.sha256(f"bench wallet {index}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    address: str
    token_type: str
    load: Owners
    resync: Owners
    resync_label: str


def erc721_scenario(tokens: int, wallets: int, rng: random.Random) -> Scenario:
    """``tokens`` tokens; the first ``wallets`` go one to each wallet, the rest skewed (whales)."""
    addresses = [wallet(i) for i in range(wallets + wallets // 20)]  # the last 5 %: fresh wallets
    first = list(range(wallets))
    rng.shuffle(first)
    owner = [first[t] if t < wallets else int(wallets * rng.random() ** 2) for t in range(tokens)]
    chosen = rng.sample(range(tokens), tokens // 10 + tokens // 100)
    moved, burned = chosen[: tokens // 10], set(chosen[tokens // 10 :])
    after = list(owner)
    for token in moved:
        fresh = rng.random() < 0.05
        target = rng.randrange(wallets, len(addresses)) if fresh else rng.randrange(wallets)
        while target == owner[token]:
            target = rng.randrange(wallets)
        after[token] = target
    return Scenario(
        "erc721",
        f"ERC-721, {tokens // 1000}k tokens / {wallets // 1000}k wallets",
        "0x" + "c7" * 20,
        "ERC721",
        [(addresses[owner[t]], t, 1) for t in range(tokens)],
        [(addresses[after[t]], t, 1) for t in range(tokens) if t not in burned],
        "10 % of tokens move, 1 % burn",
    )


def erc1155_scenario(rows: int, wallets: int, rng: random.Random) -> Scenario:
    """``rows // 20`` token ids with 20 holders each, Pareto balances."""
    holders_per_token = 20
    held: dict[tuple[int, int], int] = {}
    for token in range(rows // holders_per_token):
        for holder in rng.sample(range(wallets), holders_per_token):
            held[token, holder] = min(1_000_000, int(rng.paretovariate(1.2)))
    keys = list(held)
    chosen = rng.sample(range(len(keys)), len(keys) // 10 + len(keys) // 20 + len(keys) // 100)
    moved = chosen[: len(keys) // 10]
    rebalanced = chosen[len(keys) // 10 : len(keys) // 10 + len(keys) // 20]
    burned = chosen[len(keys) // 10 + len(keys) // 20 :]
    after = dict(held)
    for index in burned:
        del after[keys[index]]
    for index in rebalanced:
        after[keys[index]] = held[keys[index]] + rng.randint(1, 9)
    for index in moved:
        token, holder = keys[index]
        target = rng.randrange(wallets)
        while (token, target) in held or (token, target) in after:
            target = rng.randrange(wallets)
        after[token, target] = after.pop((token, holder))
    addresses = [wallet(i) for i in range(wallets)]
    return Scenario(
        "erc1155",
        f"ERC-1155, {rows // 1000}k rows ({rows // holders_per_token // 1000}k ids x {holders_per_token} holders)",
        "0x" + "c5" * 20,
        "ERC1155",
        [(addresses[h], t, b) for (t, h), b in held.items()],
        [(addresses[h], t, b) for (t, h), b in after.items()],
        "10 % of rows move, 5 % change balance, 1 % burn",
    )


def extra_collections(wallets: int, scale: float, rng: random.Random) -> list[tuple[str, Owners]]:
    """48 more ERC-721 collections: 40 of sizes 40k/k (scaled) and 8 tiny ones, holders skewed."""
    sizes = [max(1, int(40_000 * scale / (k + 1))) for k in range(40)] + [200, 100, 50, 20, 10, 5, 3, 2]
    made = []
    for k, size in enumerate(sizes):
        owners = [(wallet(int(wallets * rng.random() ** 1.5)), t, 1) for t in range(size)]
        made.append((f"0x{0xE0000 + k:040x}", owners))
    return made


# -- the row-level baseline -----------------------------------------------------------------------------
_ROWLEVEL_FUNCTIONS = f"""
CREATE FUNCTION {ROW}.update_user_collection_count() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.owner_address = NEW.owner_address AND OLD.collection_id = NEW.collection_id THEN
        UPDATE {ROW}.user_collections
        SET total_balance = total_balance - OLD.balance + NEW.balance
        WHERE owner_address = NEW.owner_address AND collection_id = NEW.collection_id;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        -- Decrement, or delete the row whose count would fall to 0 (CHECK token_count > 0). The UPDATE
        -- first: a concurrent decrement re-checks token_count > 1 after its wait and then deletes.
        UPDATE {ROW}.user_collections
        SET token_count = token_count - 1, total_balance = total_balance - OLD.balance
        WHERE owner_address = OLD.owner_address AND collection_id = OLD.collection_id AND token_count > 1;
        IF NOT FOUND THEN
            DELETE FROM {ROW}.user_collections
            WHERE owner_address = OLD.owner_address AND collection_id = OLD.collection_id;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {ROW}.user_collections AS uc (owner_address, collection_id, token_count, total_balance)
        VALUES (NEW.owner_address, NEW.collection_id, 1, NEW.balance)
        ON CONFLICT (owner_address, collection_id) DO UPDATE
        SET token_count = uc.token_count + 1, total_balance = uc.total_balance + excluded.total_balance;
    END IF;
    RETURN NULL;
END
$$;

-- A scan-sourced row for a key the index now holds: recomputed from nft_ownership, as 0003 does. (Exact
-- when one row of that key changes per statement; the bench has no scan rows.)
CREATE FUNCTION {ROW}.take_over_scan_row(p_wallet text, p_collection uuid) RETURNS void
    LANGUAGE sql AS
$$
    UPDATE {ROW}.wallet_collection_mapping AS m
    SET source = 'index', collection_id = p_collection, num_distinct_tokens = held.tokens,
        total_balance = held.balance, last_owned_at = now()
    FROM public.collections AS c,
         LATERAL (SELECT count(*) AS tokens, coalesce(sum(o.balance), 0) AS balance
                  FROM {ROW}.nft_ownership AS o
                  WHERE o.owner_address = p_wallet AND o.collection_id = p_collection) AS held
    WHERE c.id = p_collection AND m.wallet_address = p_wallet AND m.contract_address = c.contract_address
      AND m.source = 'scan' AND held.tokens > 0
$$;

CREATE FUNCTION {ROW}.update_wallet_collection_mapping() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    c record;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        SELECT id, contract_address INTO c FROM public.collections WHERE id = OLD.collection_id;
        IF FOUND AND TG_OP = 'UPDATE' AND OLD.owner_address = NEW.owner_address
                 AND OLD.collection_id = NEW.collection_id THEN
            UPDATE {ROW}.wallet_collection_mapping
            SET total_balance = total_balance - OLD.balance + NEW.balance, last_owned_at = now()
            WHERE wallet_address = OLD.owner_address AND contract_address = c.contract_address
              AND source = 'index';
            IF NOT FOUND THEN
                PERFORM {ROW}.take_over_scan_row(OLD.owner_address, OLD.collection_id);
            END IF;
            RETURN NULL;
        ELSIF FOUND THEN
            UPDATE {ROW}.wallet_collection_mapping
            SET num_distinct_tokens = num_distinct_tokens - 1, total_balance = total_balance - OLD.balance,
                last_owned_at = now()
            WHERE wallet_address = OLD.owner_address AND contract_address = c.contract_address
              AND source = 'index' AND num_distinct_tokens > 1;
            IF NOT FOUND THEN
                DELETE FROM {ROW}.wallet_collection_mapping
                WHERE wallet_address = OLD.owner_address AND contract_address = c.contract_address
                  AND source = 'index';
                IF NOT FOUND THEN
                    PERFORM {ROW}.take_over_scan_row(OLD.owner_address, OLD.collection_id);
                END IF;
            END IF;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT id, contract_address, name, symbol, token_type INTO c
        FROM public.collections WHERE id = NEW.collection_id;
        INSERT INTO {ROW}.wallet_collection_mapping AS m (
            wallet_address, contract_address, collection_id, num_distinct_tokens, total_balance, source,
            last_owned_at, name, symbol, token_type)
        VALUES (NEW.owner_address, c.contract_address, c.id, 1, NEW.balance, 'index', now(), c.name, c.symbol,
                c.token_type)
        ON CONFLICT (wallet_address, contract_address) DO UPDATE
        SET num_distinct_tokens = m.num_distinct_tokens + 1,
            total_balance = m.total_balance + excluded.total_balance,
            collection_id = excluded.collection_id,
            last_owned_at = excluded.last_owned_at
        WHERE m.source = 'index';
        IF NOT FOUND THEN
            PERFORM {ROW}.take_over_scan_row(NEW.owner_address, NEW.collection_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION {ROW}.clear_ownership_summaries() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    DELETE FROM {ROW}.user_collections;
    DELETE FROM {ROW}.wallet_collection_mapping WHERE source = 'index';
    RETURN NULL;
END
$$;
"""

_CHANGED = (
    "OLD.owner_address IS DISTINCT FROM NEW.owner_address OR OLD.collection_id IS DISTINCT FROM NEW.collection_id"
    " OR OLD.balance IS DISTINCT FROM NEW.balance"
)
_ROWLEVEL_TRIGGERS = f"""
CREATE TRIGGER nft_ownership_summary_1_user_collections_row AFTER INSERT OR DELETE ON {ROW}.nft_ownership
    FOR EACH ROW EXECUTE FUNCTION {ROW}.update_user_collection_count();
CREATE TRIGGER nft_ownership_summary_1_user_collections_row_update AFTER UPDATE ON {ROW}.nft_ownership
    FOR EACH ROW WHEN ({_CHANGED}) EXECUTE FUNCTION {ROW}.update_user_collection_count();
CREATE TRIGGER nft_ownership_summary_2_wallet_mapping_row AFTER INSERT OR DELETE ON {ROW}.nft_ownership
    FOR EACH ROW EXECUTE FUNCTION {ROW}.update_wallet_collection_mapping();
CREATE TRIGGER nft_ownership_summary_2_wallet_mapping_row_update AFTER UPDATE ON {ROW}.nft_ownership
    FOR EACH ROW WHEN ({_CHANGED}) EXECUTE FUNCTION {ROW}.update_wallet_collection_mapping();
CREATE TRIGGER nft_ownership_summary_truncate AFTER TRUNCATE ON {ROW}.nft_ownership
    FOR EACH STATEMENT EXECUTE FUNCTION {ROW}.clear_ownership_summaries();
"""

_FOREIGN_KEYS = """
SELECT pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %(table)s::regclass AND contype = 'f' ORDER BY conname
"""

_STORAGE_OPTIONS = "SELECT reloptions FROM pg_class WHERE oid = %(table)s::regclass"

# Every non-internal trigger of the table except the summary maintenance (0003, 0012), fully qualified.
_OTHER_TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t JOIN pg_proc AS p ON p.oid = t.tgfoid
WHERE t.tgrelid = %(table)s::regclass AND NOT t.tgisinternal AND p.proname <> ALL(%(summary)s) ORDER BY t.tgname
"""


def create_rowlevel_schema(conn: Any) -> list[str]:
    """The three tables again in ``bench_rowlevel``, with row-level summary triggers; returns the copied
    (non-summary) triggers' names."""
    conn.execute(f"DROP SCHEMA IF EXISTS {ROW} CASCADE")
    conn.execute(f"CREATE SCHEMA {ROW}")
    conn.execute("SET search_path = pg_catalog")  # catalog functions print fully qualified names
    copied: list[str] = []
    try:
        for table in TABLES:
            conn.execute(f"CREATE TABLE {ROW}.{table} (LIKE public.{table} INCLUDING ALL)")
            (options,) = conn.execute(_STORAGE_OPTIONS, {"table": f"public.{table}"}).fetchone()
            if options:  # LIKE does not copy storage parameters (fillfactor)
                conn.execute(f"ALTER TABLE {ROW}.{table} SET ({', '.join(options)})")
            for (definition,) in conn.execute(_FOREIGN_KEYS, {"table": f"public.{table}"}).fetchall():
                conn.execute(f"ALTER TABLE {ROW}.{table} ADD {definition}")
            rows = conn.execute(_OTHER_TRIGGERS, {"table": f"public.{table}", "summary": list(SUMMARY_FUNCTIONS)})
            for name, definition in rows.fetchall():
                conn.execute(definition.replace(f" ON public.{table} ", f" ON {ROW}.{table} "))
                copied.append(f"{table}.{name}")
    finally:
        conn.execute("RESET search_path")
    conn.execute(_ROWLEVEL_FUNCTIONS)
    conn.execute(_ROWLEVEL_TRIGGERS)
    for schema in ("public", ROW):
        for table in TABLES:
            conn.execute(f"ALTER TABLE {schema}.{table} SET (autovacuum_enabled = false)")
    return copied


# -- sync -----------------------------------------------------------------------------------------------
@dataclass
class Design:
    name: str
    schema: str
    conn: Any
    seconds: dict[str, list[float]] = field(default_factory=dict)
    traces: dict[str, list[str]] = field(default_factory=dict)

    def tables(self) -> str:
        return ", ".join(f"{self.schema}.{table}" for table in TABLES)


def _sync(design: Design, collection_id: uuid.UUID, owners: Owners) -> float:
    from such_market.collections.writes import replace_collection_owners

    design.conn.execute("CHECKPOINT")
    gc.collect()
    started = time.perf_counter()
    replace_collection_owners(conn=design.conn, collection_id=collection_id, owners=owners)
    return time.perf_counter() - started


_FIGURES = """
SELECT (SELECT count(*) FROM {s}.nft_ownership),
       (SELECT coalesce(sum(balance), 0) FROM {s}.nft_ownership),
       (SELECT count(*) FROM {s}.user_collections),
       (SELECT coalesce(sum(token_count), 0) FROM {s}.user_collections),
       (SELECT coalesce(sum(total_balance), 0) FROM {s}.user_collections),
       (SELECT count(*) FROM {s}.wallet_collection_mapping),
       (SELECT coalesce(sum(num_distinct_tokens), 0) FROM {s}.wallet_collection_mapping),
       (SELECT coalesce(sum(total_balance), 0) FROM {s}.wallet_collection_mapping)
"""
_FIGURE_NAMES = (
    "ownership_rows",
    "ownership_balance",
    "user_collections_rows",
    "user_collections_tokens",
    "user_collections_balance",
    "mapping_rows",
    "mapping_tokens",
    "mapping_balance",
)
_COMPARED = {
    "nft_ownership": "collection_id, token_id, owner_address, balance, single_owner",
    "user_collections": "owner_address, collection_id, token_count, total_balance",
    "wallet_collection_mapping": (
        "wallet_address, contract_address, collection_id, num_distinct_tokens, total_balance, source, name, symbol,"
        " token_type"
    ),
}


def compare_designs(conn: Any) -> tuple[int, dict[str, Any]]:
    """Rows that differ between the two designs (each direction), their figures, and our consistency."""
    from such_market.db.consistency import check_summaries

    differing = 0
    for table, columns in _COMPARED.items():
        row = conn.execute(
            f"""SELECT (SELECT count(*) FROM (SELECT {columns} FROM public.{table}
                                              EXCEPT ALL SELECT {columns} FROM {ROW}.{table}) AS a)
                     + (SELECT count(*) FROM (SELECT {columns} FROM {ROW}.{table}
                                              EXCEPT ALL SELECT {columns} FROM public.{table}) AS b)"""
        ).fetchone()
        differing += int(row[0])
    figures = {}
    for schema in ("public", ROW):
        values = conn.execute(_FIGURES.format(s=schema)).fetchone()
        figures[schema] = {name: int(value) for name, value in zip(_FIGURE_NAMES, values, strict=True)}
    report = check_summaries(conn=conn)
    differing += report.difference_count
    return differing, {"figures": figures, "ours_consistent": report.ok}


def _vacuum(conn: Any, schema: str) -> None:
    for table in TABLES:
        conn.execute(f"VACUUM (ANALYZE) {schema}.{table}")


_TRIGGER_LINE = re.compile(r"Trigger (.+?): time=([\d.]+) calls=(\d+)")
_DURATION = re.compile(r"duration: ([\d.]+) ms")


@contextmanager
def auto_explained(conn: Any) -> Iterator[list[str]]:
    """auto_explain every top-level statement run on ``conn`` (ANALYZE, trigger times): the messages."""
    messages: list[str] = []

    def collect(diagnostic: Any) -> None:
        message = diagnostic.message_primary or ""
        if "Query Text:" in message:
            messages.append(message)

    for statement in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_triggers = on",
        "SET auto_explain.log_buffers = on",
        "SET client_min_messages = log",
    ):
        conn.execute(statement)
    conn.add_notice_handler(collect)
    try:
        yield messages
    finally:
        conn.remove_notice_handler(collect)
        conn.execute("SET auto_explain.log_min_duration = -1")
        conn.execute("RESET client_min_messages")


def trace_sync(design: Design, collection_id: uuid.UUID, owners: Owners, *, truncate: bool, what: str) -> list[str]:
    """One more sync, rolled back, under auto_explain: per statement its time, rows and triggers."""
    from such_market.collections.writes import replace_collection_owners

    conn = design.conn
    with auto_explained(conn) as messages, conn.transaction(force_rollback=True):
        if truncate:
            conn.execute(f"TRUNCATE {design.tables()}")
        started = time.perf_counter()
        replace_collection_owners(conn=conn, collection_id=collection_id, owners=owners)
        total = time.perf_counter() - started
    lines = [
        f"{design.name}, {what}: replace_collection_owners {total:.3f} s under auto_explain (ANALYZE, rolled back)"
    ]
    for message in messages:
        duration = _DURATION.search(message)
        milliseconds = float(duration.group(1)) if duration else 0.0
        if milliseconds < 5:
            continue
        text = message.split("Query Text:", 1)[1].strip()
        top = next((line.strip() for line in text.splitlines()[1:] if "(actual" in line), "")
        query = " ".join(text.split())[:70]
        lines.append(f"  {milliseconds:9.1f} ms  {query}")
        if top:
            lines.append(f"      plan: {top[:150]}")
        for name, trigger_ms, calls in _TRIGGER_LINE.findall(message):
            lines.append(f"      trigger {name}: {float(trigger_ms):.1f} ms, {calls} call(s)")
    return lines


def trigger_ms(lines: Sequence[str], *, summary: bool = True) -> float:
    """Milliseconds spent in the traced triggers: the summary-maintenance ones (names containing
    ``summary``), or with ``summary=False`` all of them."""
    total = 0.0
    for line in lines:
        found = re.search(r"trigger (.+): ([\d.]+) ms", line)
        if found and (not summary or "summary" in found.group(1)):
            total += float(found.group(2))
    return total


def _statements_ms(lines: Sequence[str]) -> float:
    """Milliseconds of the traced statements (each includes its AFTER triggers)."""
    total = 0.0
    for line in lines:
        found = re.match(r"\s+([\d.]+) ms  ", line)
        if found:
            total += float(found.group(1))
    return total


def run_sync(
    conn: Any, designs: Sequence[Design], scenario: Scenario, repeats: int
) -> tuple[uuid.UUID, int, dict[str, Any]]:
    """Load and resync ``scenario`` ``repeats`` times in each design; returns the collection id, the
    number of differing rows seen after any step (0 = identical summaries) and the figures."""
    from such_market.collections.writes import CollectionMetadata, upsert_collection

    collection = upsert_collection(
        conn=conn,
        metadata=CollectionMetadata(
            contract_address=scenario.address,
            name=f"Bench {scenario.token_type}",
            symbol="OWN",
            token_type=scenario.token_type,  # type: ignore[arg-type]
        ),
    )
    cid = collection.id
    differing = 0
    figures: dict[str, Any] = {}
    for repeat in range(repeats):
        order = list(designs) if repeat % 2 == 0 else list(reversed(designs))
        for design in order:
            design.conn.execute(f"TRUNCATE {design.tables()}")
        for design in order:
            design.seconds.setdefault(f"{scenario.key}.load", []).append(_sync(design, cid, scenario.load))
        found, figures["after_load"] = compare_designs(conn)
        differing += found
        for design in order:
            _vacuum(design.conn, design.schema)
        for design in order:
            design.seconds.setdefault(f"{scenario.key}.resync", []).append(_sync(design, cid, scenario.resync))
        found, figures["after_resync"] = compare_designs(conn)
        differing += found
    for design in designs:  # evidence: where the time goes (rolled back; state stays "resynced")
        design.traces[f"{scenario.key}.load"] = trace_sync(design, cid, scenario.load, truncate=True, what="first load")
        design.traces[f"{scenario.key}.resync"] = trace_sync(
            design, cid, scenario.load, truncate=False, what="resync back to the load (the same changes reversed)"
        )
    return cid, differing, figures


def sync_measures(designs: Sequence[Design], scenarios: Sequence[Scenario], repeats: int) -> list[Measure]:
    ours, rowlevel = designs
    measures: list[Measure] = []
    for scenario in scenarios:
        for step, step_label in (("load", "first load"), ("resync", scenario.resync_label)):
            key = f"{scenario.key}.{step}"
            ours_s = statistics.median(ours.seconds[key])
            row_s = statistics.median(rowlevel.seconds[key])
            rows = len(scenario.load if step == "load" else scenario.resync)
            runs = ", ".join(f"{s:.2f}" for s in ours.seconds[key])
            row_runs = ", ".join(f"{s:.2f}" for s in rowlevel.seconds[key])
            ours_trace, row_trace = ours.traces.get(key, []), rowlevel.traces.get(key, [])
            mine = Measure(
                GROUP,
                f"ownership.sync.{key}",
                f"sync {scenario.title}: {step_label}, statement-level (ours)",
                round(ours_s, 3),
                "s",
                stats=Stats.of_ms([s * 1000 for s in ours.seconds[key]]),
                bar=f"≤ {SYNC_BAR_S:g} s",
                passed=ours_s <= SYNC_BAR_S,
                note=f"median of {repeats}: {runs} s; {rows} rows held after",
                extra={"trace": ours_trace},
            )
            base = Measure(
                GROUP,
                f"ownership.sync_rowlevel.{key}",
                f"sync {scenario.title}: {step_label}, row-level triggers",
                round(row_s, 3),
                "s",
                stats=Stats.of_ms([s * 1000 for s in rowlevel.seconds[key]]),
                ratio=row_s / ours_s,
                ratio_of=mine.name,
                note=f"median of {repeats}: {row_runs} s",
                extra={"trace": row_trace},
            )
            speedup = row_s / ours_s
            ours_ms, row_ms = trigger_ms(ours_trace), trigger_ms(row_trace)
            judged = step == "load"  # the sync that writes all 100k rows; see the module docstring
            gain = Measure(
                GROUP,
                f"ownership.speedup.{key}",
                f"sync {scenario.title}: {step_label}, row-level / ours",
                round(speedup, 2),
                "x",
                bar=f"≥ {SPEEDUP_BAR:g}x" if judged else None,
                passed=speedup >= SPEEDUP_BAR if judged else None,
                note=(
                    "the whole replace_collection_owners call, medians"
                    if judged
                    else _resync_note(scenario, ours_s=ours_s, row_s=row_s, ours_trace=ours_trace, ours_ms=ours_ms)
                ),
            )
            alone = Measure(
                GROUP,
                f"ownership.speedup_triggers.{key}",
                f"sync {scenario.title}: {step_label}, summary triggers alone, row-level / ours",
                round(row_ms / ours_ms, 2) if ours_ms > 0 else 0.0,
                "x",
                note=(
                    f"trigger time under auto_explain: ours {ours_ms:.0f} ms, row-level {row_ms:.0f} ms; shared by "
                    f"both (the DML, RI checks, set_single_owner, set_updated_at) ours "
                    f"{_statements_ms(ours_trace) - ours_ms:.0f} ms, "
                    f"row-level {_statements_ms(row_trace) - row_ms:.0f} ms"
                ),
            )
            if gain.passed is False or mine.passed is False:
                gain.extra["plan"] = [*ours_trace, *row_trace]
            measures += [mine, base, gain, alone]
    return measures


def _resync_note(scenario: Scenario, *, ours_s: float, row_s: float, ours_trace: Sequence[str], ours_ms: float) -> str:
    """Why a resync's whole-call ratio is reported, not judged: the ceiling its shared work sets."""
    before, after = set(scenario.load), set(scenario.resync)
    written = len(before - after) + len(after - before)
    traced = re.search(r"replace_collection_owners ([\d.]+) s", ours_trace[0]) if ours_trace else None
    if traced is None:
        return f"not judged: writes {written} of {len(after)} rows"
    shared = 1 - ours_ms / (float(traced.group(1)) * 1000)
    return (
        f"not judged (the bar is for the 100k-row load): the resync writes {written} rows, and the work both "
        f"designs share (COPY, the anti-joins over all {len(after)} rows, the DML, RI checks) is "
        f"{shared:.0%} of ours under auto_explain, so summaries that cost nothing would reach "
        f"{row_s / (ours_s * shared):.1f}x"
    )


# -- storage and queries --------------------------------------------------------------------------------
_LEGACY_DDL = f"""
DROP SCHEMA IF EXISTS {LEGACY} CASCADE;
CREATE SCHEMA {LEGACY};
-- migrations/0002, verbatim apart from the schema
CREATE TABLE {LEGACY}.user_nft_cache (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fid            bigint,
    wallet_address text NOT NULL,
    contracts      jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER user_nft_cache_set_updated_at
    BEFORE UPDATE ON {LEGACY}.user_nft_cache FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TABLE {LEGACY}.user_nft_cache_tokens (LIKE {LEGACY}.user_nft_cache INCLUDING ALL);
"""

_ELEMENT = """jsonb_build_object(
    'address', m.contract_address, 'name', m.name, 'symbol', m.symbol, 'tokenType', m.token_type,
    'totalBalance', m.total_balance::text, 'numDistinctTokensOwned', m.num_distinct_tokens::text,
    'isSpam', false)"""

_FILL_LEGACY = f"""
INSERT INTO {LEGACY}.user_nft_cache (wallet_address, contracts)
SELECT m.wallet_address, jsonb_agg({_ELEMENT} ORDER BY m.contract_address)
FROM public.wallet_collection_mapping AS m
GROUP BY m.wallet_address
ORDER BY m.wallet_address
"""

_FILL_LEGACY_TOKENS = f"""
INSERT INTO {LEGACY}.user_nft_cache_tokens (wallet_address, contracts)
SELECT m.wallet_address,
       jsonb_agg({_ELEMENT} || jsonb_build_object('tokens', t.tokens) ORDER BY m.contract_address)
FROM public.wallet_collection_mapping AS m
JOIN (SELECT owner_address, collection_id, jsonb_object_agg(token_id::text, balance::text) AS tokens
      FROM public.nft_ownership GROUP BY owner_address, collection_id) AS t
  ON t.owner_address = m.wallet_address AND t.collection_id = m.collection_id
GROUP BY m.wallet_address
ORDER BY m.wallet_address
"""

_LEGACY_INDEXES = f"""
CREATE UNIQUE INDEX user_nft_cache_wallet ON {LEGACY}.user_nft_cache (wallet_address);
CREATE INDEX user_nft_cache_contracts ON {LEGACY}.user_nft_cache USING gin (contracts jsonb_path_ops);
CREATE UNIQUE INDEX user_nft_cache_tokens_wallet ON {LEGACY}.user_nft_cache_tokens (wallet_address);
CREATE INDEX user_nft_cache_tokens_contracts ON {LEGACY}.user_nft_cache_tokens USING gin (contracts jsonb_path_ops);
"""

_SIZE = """
SELECT pg_table_size(%(rel)s::regclass), pg_indexes_size(%(rel)s::regclass), pg_total_relation_size(%(rel)s::regclass)
"""


def seed_portfolio(conn: Any, extras: Sequence[tuple[str, Owners]]) -> None:
    from such_market.collections.writes import CollectionMetadata, replace_collection_owners, upsert_collection

    for k, (address, owners) in enumerate(extras):
        row = upsert_collection(
            conn=conn,
            metadata=CollectionMetadata(
                contract_address=address, name=f"Portfolio {k}", symbol=f"PF{k}", token_type="ERC721"
            ),
        )
        replace_collection_owners(conn=conn, collection_id=row.id, owners=owners)


def build_legacy(conn: Any) -> dict[str, float]:
    steps: dict[str, float] = {}
    conn.execute(_LEGACY_DDL)
    for name, sql in (
        ("fill_counts", _FILL_LEGACY),
        ("fill_tokens", _FILL_LEGACY_TOKENS),
        ("indexes", _LEGACY_INDEXES),
    ):
        started = time.perf_counter()
        conn.execute(sql)
        steps[name] = round(time.perf_counter() - started, 3)
    return steps


def compact(conn: Any) -> None:
    """VACUUM FULL + ANALYZE every compared table (no bloat on either side), then visibility maps."""
    relations = [f"public.{t}" for t in TABLES] + [f"{LEGACY}.user_nft_cache", f"{LEGACY}.user_nft_cache_tokens"]
    for relation in relations:
        conn.execute(f"VACUUM (FULL, ANALYZE) {relation}")
    conn.execute("CHECKPOINT")
    for relation in relations:
        conn.execute(f"VACUUM (ANALYZE) {relation}")


def sizes(conn: Any, relations: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for relation in relations:
        table, indexes, total = conn.execute(_SIZE, {"rel": relation}).fetchone()
        out[relation] = {"table_mb": table / 2**20, "indexes_mb": indexes / 2**20, "total_mb": total / 2**20}
    return out


def _mb(measure_sizes: dict[str, dict[str, float]], *relations: str, part: str = "total_mb") -> float:
    return sum(measure_sizes[r][part] for r in relations)


def storage_measures(conn: Any) -> list[Measure]:
    uc, wcm, own = (f"public.{t}" for t in ("user_collections", "wallet_collection_mapping", "nft_ownership"))
    legacy, tokens = f"{LEGACY}.user_nft_cache", f"{LEGACY}.user_nft_cache_tokens"
    got = sizes(conn, [uc, wcm, own, legacy, tokens])
    gin = {
        name: conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()[0] / 2**20
        for name in (f"{LEGACY}.user_nft_cache_contracts", f"{LEGACY}.user_nft_cache_tokens_contracts")
    }
    counts = {
        name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in (uc, wcm, own, legacy, tokens)
    }
    summaries = _mb(got, uc, wcm)
    everything = _mb(got, uc, wcm, own)
    legacy_mb = _mb(got, legacy)
    tokens_mb = _mb(got, tokens)
    own_mb = _mb(got, own)

    def detail(*relations: str) -> str:
        return "; ".join(
            f"{r.split('.')[-1]} {counts[r]} rows: table {got[r]['table_mb']:.1f}"
            f" + indexes {got[r]['indexes_mb']:.1f} MB"
            for r in relations
        )

    ours_summaries = Measure(
        GROUP,
        "ownership.storage.summaries",
        "storage: user_collections + wallet_collection_mapping (per-contract counts)",
        round(summaries, 2),
        "MB",
        note=detail(uc, wcm),
        extra={"sizes": got},
    )
    ours_tokens = Measure(
        GROUP,
        "ownership.storage.nft_ownership",
        "storage: nft_ownership (token level)",
        round(own_mb, 2),
        "MB",
        note=detail(own) + f"; all three normalized tables {everything:.1f} MB",
    )
    return [
        ours_summaries,
        Measure(
            GROUP,
            "ownership.storage.jsonb_counts",
            "storage: JSONB user_nft_cache, per-contract counts (legacy shape)",
            round(legacy_mb, 2),
            "MB",
            ratio=legacy_mb / summaries,
            ratio_of=ours_summaries.name,
            note=detail(legacy) + f" (GIN {gin[legacy + '_contracts']:.1f} MB; without GIN "
            f"{legacy_mb - gin[legacy + '_contracts']:.1f} MB)",
        ),
        ours_tokens,
        Measure(
            GROUP,
            "ownership.storage.jsonb_tokens",
            "storage: JSONB user_nft_cache + token ids/balances per contract",
            round(tokens_mb, 2),
            "MB",
            ratio=tokens_mb / own_mb,
            ratio_of=ours_tokens.name,
            note=detail(tokens) + f" (GIN {gin[tokens + '_contracts']:.1f} MB; without GIN "
            f"{tokens_mb - gin[tokens + '_contracts']:.1f} MB); vs all three normalized tables "
            f"{tokens_mb / everything:.2f}x",
        ),
    ]


_HOLDERS = """
SELECT uc.owner_address, uc.token_count
FROM user_collections AS uc JOIN collections AS c ON c.id = uc.collection_id
WHERE c.contract_address = %(address)s
"""
_HOLDERS_GIN = f"""
SELECT u.wallet_address, (e.value ->> 'numDistinctTokensOwned')::integer
FROM {LEGACY}.user_nft_cache AS u
CROSS JOIN LATERAL jsonb_array_elements(u.contracts) AS e(value)
WHERE u.contracts @> %(probe)s::jsonb AND e.value ->> 'address' = %(address)s
"""
_HOLDERS_SCAN = f"""
SELECT u.wallet_address, (e.value ->> 'numDistinctTokensOwned')::integer
FROM {LEGACY}.user_nft_cache AS u
CROSS JOIN LATERAL jsonb_array_elements(u.contracts) AS e(value)
WHERE e.value ->> 'address' = %(address)s
"""
_PORTFOLIO = """
SELECT contract_address, num_distinct_tokens::integer, total_balance::text, name, symbol, token_type
FROM wallet_collection_mapping WHERE wallet_address = %(wallet)s
"""
_PORTFOLIO_ROW = f"SELECT contracts::text FROM {LEGACY}.user_nft_cache WHERE wallet_address = %(wallet)s"
_PORTFOLIO_ROWS = f"""
SELECT e.value ->> 'address', (e.value ->> 'numDistinctTokensOwned')::integer, e.value ->> 'totalBalance',
       e.value ->> 'name', e.value ->> 'symbol', e.value ->> 'tokenType'
FROM {LEGACY}.user_nft_cache AS u
CROSS JOIN LATERAL jsonb_array_elements(u.contracts) AS e(value)
WHERE u.wallet_address = %(wallet)s
"""

_HOLDER_COUNTS = """
SELECT c.contract_address, count(*) AS holders
FROM user_collections AS uc JOIN collections AS c ON c.id = uc.collection_id
GROUP BY c.contract_address ORDER BY holders
"""
_WALLET_COUNTS = """
SELECT wallet_address, count(*) AS held
FROM wallet_collection_mapping GROUP BY wallet_address ORDER BY held, wallet_address
"""


def _closest(pairs: Sequence[tuple[str, int]], target: int) -> tuple[str, int]:
    return min(pairs, key=lambda pair: (abs(pair[1] - target), pair[0]))


def query_measures(conn: Any, *, quick: bool) -> list[Measure]:
    n, warmup, budget = (60, 5, 0.5) if quick else (300, 20, 3.0)
    holders = [(a, int(h)) for a, h in conn.execute(_HOLDER_COUNTS).fetchall()]
    wallets = [(w, int(h)) for w, h in conn.execute(_WALLET_COUNTS).fetchall()]
    collections = {
        "largest": holders[-1],
        "~1k holders": _closest(holders, 1000),
        "few holders": _closest(holders, 5),
    }
    portfolios = {"median wallet": wallets[len(wallets) // 2], "largest wallet": wallets[-1]}

    def fetch(sql: str, params: dict[str, Any]) -> Callable[[], list[Any]]:
        return lambda: conn.execute(sql, params).fetchall()

    measures: list[Measure] = []
    for label, (address, count) in collections.items():
        params = {"address": address, "probe": json.dumps([{"address": address}])}
        calls = {
            "ours": fetch(_HOLDERS, params),
            "gin": fetch(_HOLDERS_GIN, params),
            "scan": fetch(_HOLDERS_SCAN, params),
        }
        answers = {name: sorted(call()) for name, call in calls.items()}
        if not (answers["ours"] == answers["gin"] == answers["scan"]) or len(answers["ours"]) != count:
            raise RuntimeError(f"wallets holding {address}: the designs disagree")
        slug = label.replace("~", "").replace(" ", "_")
        ours = latency(
            GROUP,
            f"ownership.query.holders.{slug}",
            f"wallets holding collection X ({label}: {count} wallets), ours",
            time_calls(calls["ours"], n=n, warmup=warmup, budget_s=budget),
            note="user_collections ⋈ collections by address",
        )
        measures.append(ours)
        for name, note in (
            ("gin", "contracts @> '[{\"address\": X}]' via GIN jsonb_path_ops, then the element"),
            ("scan", "jsonb_array_elements over every row"),
        ):
            stats = time_calls(calls[name], n=n, warmup=warmup, budget_s=budget)
            measures.append(
                latency(
                    GROUP,
                    f"ownership.query.holders_jsonb_{name}.{slug}",
                    f"wallets holding collection X ({label}), JSONB {name}",
                    stats,
                    reference=ours,
                    note=note,
                    plan=_plan(conn, _HOLDERS_GIN if name == "gin" else _HOLDERS_SCAN, params),
                )
            )
    for label, (address, count) in portfolios.items():
        params = {"wallet": address}
        ours_call, rows_call, row_call = (
            fetch(_PORTFOLIO, params),
            fetch(_PORTFOLIO_ROWS, params),
            fetch(_PORTFOLIO_ROW, params),
        )
        if sorted(ours_call()) != sorted(rows_call()) or len(ours_call()) != count:
            raise RuntimeError(f"collections of {address}: the designs disagree")
        slug = label.replace(" ", "_")
        ours = latency(
            GROUP,
            f"ownership.query.portfolio.{slug}",
            f"collections wallet W holds ({label}: {count} collections), ours",
            time_calls(ours_call, n=n, warmup=warmup, budget_s=budget),
            note="wallet_collection_mapping by wallet (primary key)",
        )
        measures.append(ours)
        for name, call, note in (
            ("row", row_call, "the wallet's row, contracts::text (no parsing on either side)"),
            ("rows", rows_call, "the wallet's row expanded with jsonb_array_elements into the same rows"),
        ):
            measures.append(
                latency(
                    GROUP,
                    f"ownership.query.portfolio_jsonb_{name}.{slug}",
                    f"collections wallet W holds ({label}), JSONB {name}",
                    time_calls(call, n=n, warmup=warmup, budget_s=budget),
                    reference=ours,
                    note=note,
                )
            )
    return measures


def _plan(conn: Any, sql: str, params: dict[str, Any]) -> list[str]:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    return [row[0] for row in rows]


# -- the group ------------------------------------------------------------------------------------------
@contextmanager
def ownership_database(env: BenchEnv) -> Iterator[str]:
    import psycopg

    from such_market.db.migrations import migrate

    admin_url = env.services.database_url
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{OWNERSHIP_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{OWNERSHIP_DB}" TEMPLATE template0')
    url = database_url(admin_url, OWNERSHIP_DB)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, MIGRATIONS)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{OWNERSHIP_DB}" WITH (FORCE)')


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    import psycopg

    scale = 0.2 if quick else 1.0
    tokens, wallets = int(100_000 * scale), int(20_000 * scale)
    repeats = 1 if quick else 3
    rng = random.Random(20_251_125)
    scenarios = [erc721_scenario(tokens, wallets, rng), erc1155_scenario(tokens, wallets, rng)]
    extras = extra_collections(wallets, scale, rng)
    measures: list[Measure] = []
    with (
        ownership_database(env) as url,
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(url, autocommit=True, options=f"-c search_path={ROW},public") as row_conn,
    ):
        copied = create_rowlevel_schema(conn)
        designs = [Design("statement-level (ours)", "public", conn), Design("row-level", ROW, row_conn)]
        collection_ids: dict[str, uuid.UUID] = {}
        differing = 0
        figures: dict[str, Any] = {}
        for scenario in scenarios:
            cid, found, figures[scenario.key] = run_sync(conn, designs, scenario, repeats)
            collection_ids[scenario.key] = cid
            differing += found
        measures += sync_measures(designs, scenarios, repeats)
        measures.append(
            Measure(
                GROUP,
                "ownership.sync.identical",
                "sync: rows differing between the designs (+ ours vs check_summaries), all steps",
                differing,
                "rows",
                bar="0",
                passed=differing == 0,
                note=f"row-level tables also carry: {', '.join(copied)}",
                extra={"figures": figures},
            )
        )

        # The portfolio: the ERC-1155 collection is in place (last scenario); put back the ERC-721 one.
        from such_market.collections.writes import replace_collection_owners

        started = time.perf_counter()
        replace_collection_owners(conn=conn, collection_id=collection_ids["erc721"], owners=scenarios[0].resync)
        seed_portfolio(conn, extras)
        seeded_s = time.perf_counter() - started
        steps = build_legacy(conn)
        compact(conn)
        measures += storage_measures(conn)
        measures += query_measures(conn, quick=quick)
        rows = conn.execute("SELECT count(*) FROM nft_ownership").fetchone()[0]
        measures.append(
            Measure(
                GROUP,
                "ownership.portfolio",
                f"portfolio: {len(extras) + 2} collections, {rows} nft_ownership rows, seeded (ours)",
                round(seeded_s, 2),
                "s",
                note=f"JSONB tables built in {steps['fill_counts'] + steps['fill_tokens'] + steps['indexes']:.1f} s",
                extra={"legacy_steps_s": steps},
            )
        )
    return measures
