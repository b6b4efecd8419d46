"""``python -m bench [--quick] [--only GROUP ...]``: run the benchmark groups and write the results.

``--quick`` is a smoke run (fewer iterations, a smaller collection; under a minute); ``--only`` picks
groups (repeatable or comma-separated). A full run of every group writes ``bench/results/latest.*``;
any other run writes ``bench/results/partial.*``, so a smoke run never replaces the reference numbers.
The exit status is 0 even when a bar is missed (the report says which); a group that crashes is
reported too, and makes it 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import time
import traceback
import warnings
from collections.abc import Sequence

from bench.common import BenchEnv, Measure

GROUPS = {
    "hit": "bench.hit_path",
    "db": "bench.db_pages",
    "rarity": "bench.rarity",
    "stampede": "bench.stampede",
    "invalidation": "bench.invalidation",
    "clear": "bench.clearing",
    "coldstart": "bench.cold_start",
    "ownership": "bench.ownership",
    "analytics": "bench.analytics",
    "warming": "bench.warming",
    "flood": "bench.flood",
    "ingestion": "bench.ingestion",
    "growth": "bench.growth",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GROUP",
        help=f"run only these groups ({', '.join(GROUPS)}); repeatable or comma-separated",
    )
    parser.add_argument(
        "--vs",
        metavar="REF",
        help="coldstart: the git ref to A/B against (default: the merge-base with main, else HEAD~1; "
        "--quick skips the A/B unless given)",
    )
    parser.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME",
        help="coldstart: measure only these functions (repeatable; the memory-size table is skipped)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for value in args.only for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.groups = chosen or list(GROUPS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from bench import report

    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")  # platformdirs, on import
    started = time.perf_counter()
    measures: list[Measure] = []
    problems: list[str] = []
    print(f"bench: {'quick' if args.quick else 'full'} run of {', '.join(args.groups)}; starting services")
    env = BenchEnv()
    cache_allocator = env.cache_allocator
    try:
        for name in args.groups:
            group_started = time.perf_counter()
            print(f"bench: {name} …", flush=True)
            try:
                module = importlib.import_module(GROUPS[name])
                accepted = inspect.signature(module.run).parameters
                given = {"vs": args.vs, "functions": tuple(args.function)}
                options = {key: value for key, value in given.items() if key in accepted}
                got: list[Measure] = module.run(env, quick=args.quick, **options)
            except Exception as error:
                traceback.print_exc()
                problems.append(f"group {name} crashed: {type(error).__name__}: {error}")
                continue
            measures.extend(got)
            for measure in got:
                verdict = {None: "info", True: "PASS", False: "FAIL"}[measure.passed]
                ratio = f"  {measure.ratio:.2f}x" if measure.ratio is not None else ""
                print(f"  {verdict:4}  {measure.label:<58} {report._value(measure)}{ratio}")
            print(f"bench: {name} done in {time.perf_counter() - group_started:.1f} s", flush=True)
    finally:
        env.close()
    seconds = time.perf_counter() - started
    # Only a full run of every group replaces latest.*; smoke and partial runs go to partial.*.
    stem = "latest" if not args.quick and args.groups == list(GROUPS) else "partial"
    json_path, md_path = report.write(
        measures,
        report.environment(quick=args.quick, groups=args.groups, seconds=seconds, cache_allocator=cache_allocator),
        problems,
        stem=stem,
    )
    failed = [m.name for m in measures if m.passed is False]
    print(f"bench: {len(failed)} bar(s) missed{': ' + ', '.join(failed) if failed else ''}")
    print(f"bench: wrote {json_path.relative_to(json_path.parents[2])} and {md_path.name} in {seconds:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
