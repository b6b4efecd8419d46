"""Group ``coldstart``: the import time of each read function's handler module in a fresh interpreter.

Each measurement is a new ``python -c`` process (the project venv, the Lambda import paths and
environment) timing ``import <handler module>`` with ``perf_counter_ns``: the part of a cold start
that our code controls (interpreter start-up and the runtime's own init are not included). Bytecode
caches are warm (one untimed import first). Bar: ≤ 250 ms (p50 of the runs). A separate
``-X importtime`` run of each names the heaviest imports, as evidence of where the time goes.
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench import FUNCTIONS, LAYER, ROOT
from bench.common import BenchEnv, Measure, Stats

GROUP = "coldstart"
BAR_MS = 250.0
# The public GET functions of template.yaml (the read path), and the invalidator for reference.
READ_FUNCTIONS = (
    "health",
    "collection_metadata",
    "collection_nfts",
    "collection_traits",
    "collection_nft",
    "nft_owner",
    "owned_nfts",
    "refresh_status",
)
OTHER_FUNCTIONS = ("invalidate_cache",)

_TIMER = "import time; t = time.perf_counter_ns(); import {module}; print(time.perf_counter_ns() - t)"


def _environment(function: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FUNCTIONS / function), str(LAYER)])
    return env


def import_ms(function: str) -> float:
    """One fresh interpreter importing ``function``'s handler module; milliseconds."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and a constant program
        [sys.executable, "-c", _TIMER.format(module=function)],
        env=_environment(function),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip().splitlines()[-1]) / 1e6


def heaviest_imports(function: str, limit: int = 8) -> list[str]:
    """The top-level imports (those the handler pulls in directly or through the layer) with the most
    cumulative time, from ``-X importtime``: ``cumulative ms | package``."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-X", "importtime", "-c", f"import {function}"],
        env=_environment(function),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        package = name.strip()
        # Third-party roots and our own modules, not every stdlib leaf.
        if depth <= 1 or package.startswith("such_market"):
            rows.append((int(cumulative), package))
    rows.sort(reverse=True)
    return [f"{micros / 1000:7.1f} ms | {package}" for micros, package in rows[:limit]]


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    runs = 3 if quick else 7
    measures: list[Measure] = []
    for function in (*READ_FUNCTIONS, *OTHER_FUNCTIONS):
        import_ms(function)  # writes bytecode caches if missing
        stats = Stats.of_ms([import_ms(function) for _ in range(runs)])
        is_read = function in READ_FUNCTIONS
        passed = stats.p50_ms <= BAR_MS if is_read else None
        measure = Measure(
            GROUP,
            f"coldstart.{function}",
            f"import {function}" + ("" if is_read else " (not a read function)"),
            stats.p50_ms,
            "ms",
            stats=stats,
            bar=f"p50 ≤ {BAR_MS:g} ms" if is_read else None,
            passed=passed,
        )
        if passed is False or function in {"collection_metadata", "collection_nfts"}:
            measure.extra["heaviest_imports"] = heaviest_imports(function)
        measures.append(measure)
    return measures
