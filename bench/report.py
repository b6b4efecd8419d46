"""Writing the results: ``bench/results/latest.json`` (every raw number) and ``latest.md`` (the bars)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.common import Measure

RESULTS = ROOT / "bench" / "results"
# The extra fields a missed bar may carry as evidence, in the order they are shown.
EVIDENCE = ("profile", "profile_powertools", "plan", "heaviest_imports", "timeline")


def environment(*, quick: bool, groups: Sequence[str], seconds: float, cache_allocator: str) -> dict[str, Any]:
    import psutil

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "quick": quick,
        "groups": list(groups),
        "run_seconds": round(seconds, 1),
        "database": os.environ.get("DATABASE_URL", "").rsplit("@", 1)[-1],
        "cache": os.environ.get("REDIS_URL", "").rsplit("@", 1)[-1],
        "cache_allocator": cache_allocator,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write(
    measures: Sequence[Measure], env: dict[str, Any], problems: Sequence[str], *, stem: str = "latest"
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` under ``bench/results/``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    judged = [m for m in measures if m.passed is not None]
    summary = {
        "bars": len(judged),
        "passed": sum(1 for m in judged if m.passed),
        "failed": [m.name for m in judged if not m.passed],
        "problems": list(problems),
    }
    data = {"environment": env, "summary": summary, "measures": [m.to_json() for m in measures]}
    json_path = RESULTS / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    md_path = RESULTS / f"{stem}.md"
    md_path.write_text(markdown(measures, env, summary))
    return json_path, md_path


def _value(measure: Measure) -> str:
    if measure.unit == "ms" and measure.stats is not None:
        return f"{measure.value:.3f} ms (p99 {measure.stats.p99_ms:.3f})"
    if measure.unit == "ms":
        return f"{measure.value:.3f} ms"
    if measure.unit == "%":
        return f"{measure.value:.2f} %"
    return f"{measure.value:g} {measure.unit}".strip()


def _ratio(measure: Measure) -> str:
    if measure.ratio is None:
        return ""
    reference = (measure.ratio_of or "").rsplit(".", 1)[-1]
    return f"{measure.ratio:.2f}x {reference}"


def _verdict(measure: Measure) -> str:
    if measure.passed is None:
        return "info"
    return "PASS" if measure.passed else "**FAIL**"


def markdown(measures: Sequence[Measure], env: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [
        "# such-market benchmarks (ENGINEERING.md §5)",
        "",
        f"{env['date']} · Python {env['python']} · {env['cpu_count']} CPUs ({env['processor']}) · "
        f"Valkey on {env['cache_allocator']} · "
        f"{'quick' if env['quick'] else 'full'} run of {', '.join(env['groups'])} in {env['run_seconds']} s · "
        f"{summary['passed']}/{summary['bars']} bars passed",
        "",
        "Latencies: p50 (p99) in ms, from one run. A ratio is p50 over the named reference's p50, except in"
        " `hit`, where it is the median of per-round ratios of blocks timed side by side (the floor drifts).",
        "",
    ]
    group = None
    columns: tuple[str, ...] = ()
    for measure in measures:
        # A measure may bring its own columns (``extra["row"]``: column → cell), e.g. the cold-start table.
        row: dict[str, str] = measure.extra.get("row") or {}
        wanted = (*row, "result") if row else ("measure", "value", "bar", "ratio", "result")
        if measure.group != group:
            group = measure.group
            lines += ["", f"## {group}"]
            columns = ()
        if wanted != columns:
            columns = wanted
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        if row:
            lines.append("| " + " | ".join([*row.values(), _verdict(measure)]) + " |")
            continue
        bar = measure.bar or ""
        if measure.note:
            bar = f"{bar} ({measure.note})" if bar else measure.note
        lines.append(f"| {measure.label} | {_value(measure)} | {bar} | {_ratio(measure)} | {_verdict(measure)} |")
    if summary["failed"] or summary["problems"]:
        lines += ["", "## Misses, with evidence", ""]
        for measure in measures:
            if measure.passed is not False:
                continue
            lines.append(f"- **FAIL** `{measure.name}`: {measure.label}: {_value(measure)}, bar {measure.bar}")
            for key in EVIDENCE:
                if measure.extra.get(key):
                    lines += [
                        "",
                        f"  {key}:",
                        "",
                        "  ```",
                        *(f"  {line[:200]}" for line in measure.extra[key][:36]),
                        "  ```",
                    ]
            lines.append("")
        lines += [f"- problem: {problem}" for problem in summary["problems"]]
    lines.append("")
    return "\n".join(lines)
