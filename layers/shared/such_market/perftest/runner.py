"""The live cache performance test: measurements against the configured cache (data access: redis-py).

A run goes through five phases, each bounded by the run's time budget:

1. **health**: a fresh client connects (``connectMs``) and answers ``PING`` (median of 20, ``pingMs``);
2. **basic operations**: ``SET``, ``GET``, ``INCR``, a pipeline of 10 ``GET``s and ``DEL``, one client,
   each ``ops`` times: p50/p95/p99 and operations per second;
3. **concurrent access**: at each of the profile's levels, that many clients (threads, one connection
   each) run a 90 % ``GET`` / 10 % ``SET`` mix of ``value_bytes`` values for ``level_seconds``:
   p50/p95/p99 of every operation, throughput, errors;
4. **stress ladder**: the same mix at increasing client counts, step by step, until a step breaks — its
   error rate is above ``max_error_rate`` (1 %) or its p99 above ``p99_bound_ms`` — or the ladder ends.
   The breaking point is that step (index, clients, which bound it broke, and by how much); both bounds
   are in the answer. ``before_step`` is a seam for tests (slow the server from a given step);
5. **recovery**: right after the last step, one client measures ``GET`` latency in short windows until
   a window's p99 is back within twice the baseline (health's ping, at least 1 ms) with no error:
   ``recoveryMs`` is the time that took (``recovered: false`` if not within ``RECOVERY_MAX_SECONDS``).

Every key lives under ``<prefix>:perftest:<runId>:…`` (never a cache or durable namespace), carries a
TTL as a backstop, and is deleted when the run ends (``cleanup``). Latencies are measured client-side
around each command (``perf_counter``) and so include the client's own work: the figures describe what a
function container sees, which is what the recommendations are about.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from such_market.cache.client import CacheClient

KEY_TTL_MS: Final = 15 * 60 * 1000
RECOVERY_MAX_SECONDS: Final = 10.0
RECOVERY_WINDOW_OPS: Final = 20
PING_SAMPLES: Final = 20


@dataclass(frozen=True, slots=True)
class Profile:
    """How hard and how long a run pushes."""

    name: str
    basic_ops: int
    levels: tuple[int, ...]
    level_seconds: float
    ladder: tuple[int, ...]
    step_seconds: float
    budget_seconds: float
    p99_bound_ms: float = 50.0
    max_error_rate: float = 0.01
    value_bytes: int = 1024
    keyspace: int = 1000


PROFILES: Final[dict[str, Profile]] = {
    "quick": Profile("quick", 200, (1, 4, 8), 0.5, (2, 4, 8, 16, 32), 0.5, budget_seconds=30),
    "standard": Profile("standard", 1000, (1, 8, 32), 2.0, (4, 8, 16, 32, 64, 128), 2.0, budget_seconds=150),
    "stress": Profile("stress", 2000, (1, 16, 64), 3.0, (8, 16, 32, 64, 128, 256, 384), 3.0, budget_seconds=600),
}


def _percentile(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted ``ordered`` (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _figures(latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    ops = len(ordered) + errors
    return {
        "ops": ops,
        "errors": errors,
        "errorRate": round(errors / ops, 4) if ops else 0.0,
        "p50Ms": round(_percentile(ordered, 0.50) * 1000, 3),
        "p95Ms": round(_percentile(ordered, 0.95) * 1000, 3),
        "p99Ms": round(_percentile(ordered, 0.99) * 1000, 3),
        "opsPerSecond": round(len(ordered) / seconds, 1) if seconds > 0 else 0.0,
    }


class PerformanceRun:
    """One run against the cache that ``connect`` opens clients to (see the module doc)."""

    def __init__(
        self,
        connect: Callable[[], CacheClient],
        *,
        key_prefix: str,
        profile: Profile,
        stop_at: float,
        before_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._prefix = key_prefix
        self.profile = profile
        self._stop_at = stop_at
        self._before_step = before_step
        self._clients: list[CacheClient] = []
        self._value = b"v" * profile.value_bytes
        self._baseline_s = 0.001

    def _key(self, index: int) -> str:
        return f"{self._prefix}:{index}"

    def _left(self) -> float:
        return self._stop_at - time.monotonic()

    # -- the whole run --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every phase, then cleanup; the result document (without the run's own fields)."""
        result: dict[str, Any] = {
            "thresholds": {"maxErrorRate": self.profile.max_error_rate, "p99BoundMs": self.profile.p99_bound_ms},
            "health": None,
            "basicOperations": [],
            "concurrency": [],
            "stress": None,
            "recovery": None,
            "stoppedEarly": False,
        }
        try:
            result["health"] = self.health()
            if not result["health"]["connected"]:
                return result
            self._seed()
            result["basicOperations"] = self.basic_operations()
            result["concurrency"] = self.concurrency()
            result["stress"] = self.stress()
            result["recovery"] = self.recovery()
            result["stoppedEarly"] = self._left() <= 0 or result["stress"]["stoppedBy"] == "time_budget"
        finally:
            result["cleanup"] = {"keysDeleted": self.cleanup()}
        return result

    # -- phases ---------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            client = self._connect()
            client.ping()
            connect_ms = (time.perf_counter() - started) * 1000
            pings = []
            for _ in range(PING_SAMPLES):
                began = time.perf_counter()
                client.ping()
                pings.append(time.perf_counter() - began)
            info: Any = client.info("server")
        except Exception as error:  # the answer reports it; nothing else runs
            return {
                "connected": False,
                "connectMs": None,
                "pingMs": None,
                "serverVersion": None,
                "error": type(error).__name__,
            }
        self._clients.append(client)
        pings.sort()
        self._baseline_s = max(_percentile(pings, 0.99), 0.0005)
        version = info.get("valkey_version") or info.get("redis_version") if isinstance(info, dict) else None
        return {
            "connected": True,
            "connectMs": round(connect_ms, 3),
            "pingMs": round(_percentile(pings, 0.5) * 1000, 3),
            "serverVersion": str(version) if version else None,
            "error": None,
        }

    def _seed(self) -> None:
        client = self._clients[0]
        pipe = client.pipeline(transaction=False)
        for index in range(self.profile.keyspace):
            pipe.set(self._key(index), self._value, px=KEY_TTL_MS)
        pipe.execute()

    def basic_operations(self) -> list[dict[str, Any]]:
        client = self._clients[0]
        counter = self._key(self.profile.keyspace)  # one name past the data keys
        keys = [self._key(index) for index in range(10)]

        def pipeline_get() -> None:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            pipe.execute()

        def incr() -> None:
            client.incr(counter)
            client.pexpire(counter, KEY_TTL_MS)

        operations: list[tuple[str, Callable[[int], object]]] = [
            ("SET", lambda i: client.set(self._key(i % self.profile.keyspace), self._value, px=KEY_TTL_MS)),
            ("GET", lambda i: client.get(self._key(i % self.profile.keyspace))),
            ("INCR", lambda _: incr()),
            ("PIPELINE_GET_10", lambda _: pipeline_get()),
            ("DEL", lambda i: client.delete(self._key(self.profile.keyspace + 1 + i))),
        ]
        results = []
        for name, operation in operations:
            if self._left() <= 0:
                break
            latencies: list[float] = []
            errors = 0
            started = time.perf_counter()
            for index in range(self.profile.basic_ops):
                began = time.perf_counter()
                try:
                    operation(index)
                    latencies.append(time.perf_counter() - began)
                except Exception:
                    errors += 1
            results.append({"operation": name, **_figures(latencies, errors, time.perf_counter() - started)})
        return results

    def concurrency(self) -> list[dict[str, Any]]:
        results = []
        for clients in self.profile.levels:
            if self._left() < self.profile.level_seconds:
                break
            results.append({"clients": clients, **self._mix(clients, self.profile.level_seconds)})
        return results

    def stress(self) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        breaking: dict[str, Any] | None = None
        stopped_by = "end_of_ladder"
        for index, clients in enumerate(self.profile.ladder):
            if self._left() < self.profile.step_seconds + RECOVERY_MAX_SECONDS / 2:
                stopped_by = "time_budget"
                break
            if self._before_step is not None:
                self._before_step(index, clients)
            figures = self._mix(clients, self.profile.step_seconds)
            reasons = []
            if figures["errorRate"] > self.profile.max_error_rate:
                reasons.append("error_rate")
            if figures["p99Ms"] > self.profile.p99_bound_ms:
                reasons.append("p99")
            steps.append({"step": index, "clients": clients, **figures, "broken": bool(reasons)})
            if reasons:
                breaking = {
                    "step": index,
                    "clients": clients,
                    "reasons": reasons,
                    "errorRate": figures["errorRate"],
                    "p99Ms": figures["p99Ms"],
                    "opsPerSecond": figures["opsPerSecond"],
                }
                stopped_by = "breaking_point"
                break
        last_good = next((step for step in reversed(steps) if not step["broken"]), None)
        return {
            "maxErrorRate": self.profile.max_error_rate,
            "p99BoundMs": self.profile.p99_bound_ms,
            "steps": steps,
            "breakingPoint": breaking,
            "maxHealthyClients": last_good["clients"] if last_good else None,
            "peakOpsPerSecond": max((step["opsPerSecond"] for step in steps), default=0.0),
            "stoppedBy": stopped_by,
        }

    def recovery(self) -> dict[str, Any]:
        bound = max(2 * self._baseline_s, 0.001)
        started = time.monotonic()
        give_up = min(started + RECOVERY_MAX_SECONDS, self._stop_at)
        client: CacheClient | None = None
        while time.monotonic() < give_up:
            try:
                client = client or self._connect()
                window = []
                for index in range(RECOVERY_WINDOW_OPS):
                    began = time.perf_counter()
                    client.get(self._key(index))
                    window.append(time.perf_counter() - began)
            except Exception:
                client = None
                time.sleep(0.01)
                continue
            window.sort()
            if _percentile(window, 0.99) <= bound:
                if client is not None:
                    self._clients.append(client)
                return {
                    "recovered": True,
                    "recoveryMs": round((time.monotonic() - started) * 1000, 1),
                    "boundMs": round(bound * 1000, 3),
                }
        if client is not None:
            self._clients.append(client)
        return {"recovered": False, "recoveryMs": None, "boundMs": round(bound * 1000, 3)}

    # -- the mixed workload ---------------------------------------------------------------------------
    def _mix(self, clients: int, seconds: float) -> dict[str, Any]:
        """``clients`` threads, one connection each, a 90/10 GET/SET mix for ``seconds``."""
        while len(self._clients) < clients:
            try:
                self._clients.append(self._connect())
            except Exception:
                break
        workers = self._clients[:clients]
        missing = clients - len(workers)  # clients that could not even connect count as errors
        latencies: list[list[float]] = [[] for _ in workers]
        errors = [0] * len(workers)
        end = time.perf_counter() + min(seconds, max(0.0, self._left()))
        keyspace = self.profile.keyspace

        def work(slot: int, client: CacheClient) -> None:
            chooser = random.Random(slot)  # noqa: S311 - a workload, not cryptography
            mine = latencies[slot]
            while time.perf_counter() < end:
                key = self._key(chooser.randrange(keyspace))
                began = time.perf_counter()
                try:
                    if chooser.random() < 0.9:
                        client.get(key)
                    else:
                        client.set(key, self._value, px=KEY_TTL_MS)
                    mine.append(time.perf_counter() - began)
                except Exception:
                    errors[slot] += 1

        started = time.perf_counter()
        threads = [
            threading.Thread(target=work, args=(slot, client), daemon=True) for slot, client in enumerate(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        merged = [value for bucket in latencies for value in bucket]
        return _figures(merged, sum(errors) + missing, elapsed)

    # -- cleanup --------------------------------------------------------------------------------------
    def cleanup(self) -> int:
        """Delete every key the run may have written; returns how many existed."""
        names = [self._key(index) for index in range(self.profile.keyspace + 1 + self.profile.basic_ops + 1)]
        deleted = 0
        try:
            client = self._clients[0] if self._clients else self._connect()
            for start in range(0, len(names), 500):
                deleted += int(client.unlink(*names[start : start + 500]))
        except Exception:
            return deleted  # the keys' TTL removes what is left
        finally:
            for client in self._clients:
                with contextlib.suppress(Exception):  # closing is best effort
                    client.close()
            self._clients.clear()
        return deleted


def recommendations(result: dict[str, Any]) -> list[str]:
    """Advice derived from a run's figures (each names the figure it comes from)."""
    advice: list[str] = []
    health = result.get("health") or {}
    if not health.get("connected"):
        return ["The cache did not answer: check REDIS_URL/REDIS_HOST, the security group and AUTH."]
    bound = result["thresholds"]["p99BoundMs"]
    if health.get("connectMs") and health["connectMs"] > 50:
        advice.append(
            f"Connecting took {health['connectMs']} ms, above the 50 ms connect timeout of the functions: "
            "put the cache in the functions' subnets or raise CACHE_CONNECT_TIMEOUT_MS."
        )
    if health.get("pingMs") and health["pingMs"] > 2:
        advice.append(f"PING takes {health['pingMs']} ms: the network path to the cache is slow for a cache.")
    for operation in result.get("basicOperations") or []:
        if operation["errors"]:
            advice.append(
                f"{operation['operation']} failed {operation['errors']} times with one client: check the server."
            )
    stress = result.get("stress") or {}
    point = stress.get("breakingPoint")
    if point is not None:
        healthy = stress.get("maxHealthyClients")
        broke = " and ".join(
            f"error rate {point['errorRate']:.2%} > {stress['maxErrorRate']:.0%}"
            if reason == "error_rate"
            else f"p99 {point['p99Ms']} ms > {bound} ms"
            for reason in point["reasons"]
        )
        advice.append(
            f"The cache broke at {point['clients']} concurrent clients ({broke}); "
            + (f"{healthy} clients were fine. " if healthy else "no step was fine. ")
            + "Keep concurrent connections below that (reserved concurrency of the busiest functions) "
            "or scale the cache (a larger node, more shards or replicas for reads)."
        )
    elif stress.get("stoppedBy") == "end_of_ladder" and stress.get("steps"):
        advice.append(
            f"No breaking point up to {stress['steps'][-1]['clients']} concurrent clients "
            f"(peak {stress['peakOpsPerSecond']} ops/s): run the stress profile to find the limit."
        )
    elif stress.get("stoppedBy") == "time_budget":
        advice.append("The stress ladder stopped at its time budget before a breaking point: run it again.")
    recovery = result.get("recovery") or {}
    if recovery and not recovery.get("recovered"):
        advice.append(
            f"Latency did not come back within {recovery['boundMs']} ms in {RECOVERY_MAX_SECONDS:.0f} s "
            "after the peak: the server is still loaded (check CPU, evictions and slow log)."
        )
    elif recovery.get("recoveryMs") is not None and recovery["recoveryMs"] > 1000:
        advice.append(f"Recovery after the peak took {recovery['recoveryMs']} ms: expect slow answers after bursts.")
    if not advice:
        advice.append("All figures are within bounds; no change needed.")
    return advice
