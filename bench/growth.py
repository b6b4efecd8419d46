"""``growth``: how much the database grows per million transfers, with and without the data-lifecycle job.

N ERC-721 transfers (20,000; ``--quick`` 2,000) go through the real write path: signed Alchemy NFT-activity
webhooks of 100 transfers each into the ``alchemy_webhook`` handler (signature, parse, ``apply_transfers``:
ownership, ``ownership_activity`` and two outbox events per transfer in one transaction, published after
commit to an in-process moto EventBridge bus, then invalidation). The transfers move 200 tokens of one
indexed collection among 1,000 wallets, so the ownership tables stay the size of the holdings and only what
grows with traffic grows.

A VACUUM every ``VACUUM_EVERY`` transfers stands in for autovacuum. Every table's ``pg_total_relation_size``
(heap, TOAST and indexes) is taken after a VACUUM before and after
the transfers ("kept forever", what the schema did before the lifecycle job), and again after the pruning
job ran with every published event past its retention, then VACUUM ("with pruning": what stays beyond the
retention window). Each is reported per million transfers (delta x 1,000,000 / N). Sizes are what is
allocated, an upper bound of what is live: an outbox row is written twice (inserted, then marked
published), and VACUUM makes the first version's space reusable without shrinking the table; a plain VACUUM
returns the outbox's emptied heap pages at the end of the table, but index pages stay allocated (reused by
the next events).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from bench.common import BenchEnv, FakeContext, Measure, forget_containers, load_event, seed_small_collection
from local.send_webhook import activity_body, erc721_activity, signature

GROUP = "growth"
TOKENS = 200
WALLETS = 1000
PER_DELIVERY = 100
WARM_UP = 2_000
VACUUM_EVERY = 2_000
"""Transfers between two VACUUMs, standing in for autovacuum (a run this short would otherwise never see one):
without them every update's dead row version stays allocated and bounded tables look as if they grew."""
SIGNING_KEY = "bench-webhook-signing-key"
_OWNERS = dict.fromkeys(range(TOKENS), "0x" + "00" * 20)
"""Each token's holder as the transfers left it (the first transfer of a token is its mint)."""
MB = 1024 * 1024


def wallet(index: int) -> str:
    return "0x" + f"{index + 1:040x}"


def delivery(contract: str, transfers: list[tuple[int, str, str, int]], salt: str) -> bytes:
    """An NFT_ACTIVITY body in Alchemy's shape with one activity per (token, from, to, block)."""
    activity = [
        erc721_activity(
            contract=contract,
            token_id=token,
            sender=sender,
            receiver=receiver,
            block=block,
            tx_hash="0x" + hashlib.sha256(f"{salt}:{block}".encode()).hexdigest(),
            block_hash="0x" + hashlib.sha256(f"block:{salt}:{block}".encode()).hexdigest(),
        )
        for token, sender, receiver, block in transfers
    ]
    return activity_body(activity, webhook_id="wh_bench")


def vacuum(conn: Any) -> None:
    """VACUUM (ANALYZE) every public table: the space of dead row versions becomes reusable."""
    tables = [
        str(name)
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
        )
    ]
    for table in tables:
        conn.execute(f'VACUUM (ANALYZE) "{table}"')


def table_sizes(conn: Any) -> dict[str, int]:
    """Every public table's total size (heap, TOAST, indexes) in bytes, after a VACUUM."""
    vacuum(conn)
    return {
        str(name): int(size)
        for name, size in conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    }


def send_transfers(env: BenchEnv, contract: str, count: int, *, first_block: int) -> tuple[float, dict[str, int]]:
    """``count`` transfers through the webhook handler, numbered from ``first_block`` (the token moved and
    its block follow the number); the seconds it took and the summed receipts."""
    import os

    import boto3
    from moto import mock_aws

    os.environ["ALCHEMY_WEBHOOK_SIGNING_KEY"] = SIGNING_KEY
    forget_containers()
    import alchemy_webhook

    template = load_event("alchemy_webhook")
    owners = _OWNERS
    salt = uuid.uuid4().hex
    totals: dict[str, int] = {}
    started = time.perf_counter()
    with mock_aws():
        boto3.client("events", region_name="us-east-1").create_event_bus(Name="such-market")
        forget_containers()  # the publisher's client is made inside the mock
        for first in range(first_block, first_block + count, PER_DELIVERY):
            batch = []
            for number in range(first, min(first_block + count, first + PER_DELIVERY)):
                token = number % TOKENS
                receiver = wallet((number * 7919) % WALLETS)
                if receiver == owners[token]:
                    receiver = wallet((number * 7919 + 1) % WALLETS)
                batch.append((token, owners[token], receiver, 20_000_000 + number))
                owners[token] = receiver
            body = delivery(contract, batch, salt)
            event = dict(template)
            event["body"] = body.decode()
            event["headers"] = dict(template["headers"])
            event["headers"]["x-alchemy-signature"] = signature(body, SIGNING_KEY)
            answer = alchemy_webhook.lambda_handler(event, FakeContext())
            if answer["statusCode"] != 200:
                raise RuntimeError(f"the webhook answered {answer['statusCode']}: {answer['body']}")
            for name, value in json.loads(answer["body"]).items():
                totals[name] = totals.get(name, 0) + int(value)
            if (first + PER_DELIVERY - first_block) % VACUUM_EVERY == 0:
                with env.connect() as conn:
                    vacuum(conn)
        forget_containers()
    return time.perf_counter() - started, totals


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    from such_market.db.lifecycle import prune

    count = 2_000 if quick else 20_000
    contract = seed_small_collection(env, tokens=TOKENS)
    # Warm-up: every token minted and the holdings spread over the wallets first, so the ownership tables
    # (bounded by the holdings, not the traffic) are at their size before the measured transfers.
    # The warm-up's events are pruned too, so "with pruning" compares like with like.
    send_transfers(env, contract, WARM_UP, first_block=0)
    with env.connect() as conn:
        prune(conn=conn, retention=timedelta(0), time_budget_seconds=600)
        before = table_sizes(conn)
    seconds, receipts = send_transfers(env, contract, count, first_block=WARM_UP)
    with env.connect() as conn:
        unpublished = conn.execute("SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL").fetchone()
        after = table_sizes(conn)
        # Every published event is past a zero retention: what the job leaves once the window has passed.
        report = prune(conn=conn, retention=timedelta(0), time_budget_seconds=600)
        pruned = table_sizes(conn)
    per_million = 1_000_000 / count

    def mb(delta: int) -> float:
        return round(delta * per_million / MB, 1)

    grown = sorted(
        (name for name in after if after[name] != before.get(name, 0) or pruned[name] != before.get(name, 0)),
        key=lambda name: after[name] - before.get(name, 0),
        reverse=True,
    )
    measures: list[Measure] = []
    for name in grown:
        kept = after[name] - before.get(name, 0)
        left = pruned[name] - before.get(name, 0)
        measures.append(
            Measure(
                GROUP,
                f"growth.{name}",
                f"{name}: MB per million transfers, kept forever (with pruning: {mb(left)})",
                mb(kept),
                "MB/M",
                note=f"with pruning {mb(left)} MB/M; {kept} -> {left} bytes for {count} transfers",
                extra={"kept_bytes": kept, "after_pruning_bytes": left},
            )
        )
    total_kept = sum(after[name] - before.get(name, 0) for name in after)
    total_left = sum(pruned[name] - before.get(name, 0) for name in pruned)
    measures.append(
        Measure(
            GROUP,
            "growth.total",
            f"whole database: MB per million transfers, kept forever (with pruning: {mb(total_left)})",
            mb(total_kept),
            "MB/M",
            note=(
                f"N={count} transfers in {seconds:.1f} s ({count / seconds:.0f}/s) through the webhook handler;"
                f" receipts {receipts}; unpublished after: {unpublished[0] if unpublished else '?'};"
                f" pruned {report.deleted}"
            ),
            extra={
                "transfers": count,
                "seconds": seconds,
                "kept_bytes": total_kept,
                "after_pruning_bytes": total_left,
                "pruned": report.deleted,
            },
        )
    )
    return measures
