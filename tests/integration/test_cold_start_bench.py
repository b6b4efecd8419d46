"""The cold-start bench (bench/cold_start.py): what it runs, what it reports, how it picks memory sizes.

The probe runs in a fresh interpreter against the test's real PostgreSQL and Valkey; no timing is
asserted (the bench measures, tests check what it measured and reported).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import FUNCTIONS, ROOT
from bench.cold_start import (
    FLOORS,
    READ_FUNCTIONS,
    SIZES_MB,
    Tree,
    checkout,
    choose_memory,
    cpu_quota,
    floor,
    probe,
    run_program,
    sample_event,
)

ALL_FUNCTIONS = sorted(path.name for path in FUNCTIONS.iterdir() if (path / f"{path.name}.py").is_file())


def test_every_function_has_a_library_floor_and_a_sample_to_answer() -> None:
    # Given every function in functions/ (31 today; a new one is covered at once)
    # Then each has a floor of client libraries, and an event for its first answer
    assert sorted(FLOORS) == ALL_FUNCTIONS
    for function in ALL_FUNCTIONS:
        assert isinstance(sample_event(function), dict)
    # And a cached read's floor is the redis and orjson imports the issue names
    assert FLOORS["collection_nfts"] == ("redis", "orjson")
    assert set(READ_FUNCTIONS) <= set(ALL_FUNCTIONS)


def _write_event(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(sample_event(name)))
    return path


def test_probe_times_import_init_and_first_answer_of_a_real_handler(lambda_env: dict[str, str], tmp_path: Path) -> None:
    # Given the health function's probe in a fresh interpreter, with the test's database and cache
    program = probe(Tree("this tree", ROOT), "health", _write_event(tmp_path, "health"), dict(os.environ))
    # When it runs once
    sample = run_program(program)
    # Then it reports each phase, the settings model it loaded and the handler's own answer
    report = sample.report
    assert report["settings"] == "HealthSettings"
    assert report["status"] == 200, report
    assert report["error"] == ""
    assert all(report[f"{phase}_ns"] > 0 for phase in ("import", "init", "first", "warm"))
    assert sample.total_ms * 1e6 > report["import_ns"] + report["init_ns"] + report["first_ns"]


def test_probe_reports_a_function_that_fails_at_cold_start(
    lambda_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container without its database variable
    monkeypatch.delenv("DATABASE_URL")
    program = probe(Tree("this tree", ROOT), "health", _write_event(tmp_path, "health"), dict(os.environ))
    # When the probe runs
    report = run_program(program).report
    # Then the configuration error naming the variable is in the report, not a crash of the bench
    assert report["error"].split(":")[0] in {"ConfigurationError", "SettingsError"}  # SettingsError is one
    assert "DATABASE_URL" in report["error"]


def test_floor_imports_exactly_the_named_libraries() -> None:
    program = floor(("redis", "orjson"), dict(os.environ))
    assert program.argv[1:] == ("-c", "import redis, orjson; import os; os._exit(0)")
    assert "PYTHONPATH" not in program.env  # nothing of ours on its path
    assert run_program(program).total_ms > 0


def test_checkout_gives_a_measurable_tree_and_removes_it() -> None:
    # Given the previous commit checked out for the A/B
    with checkout("HEAD") as tree:
        where = tree.root
        # Then its handlers and layer are there to be probed
        assert tree.has("collection_nfts")
        assert (where / "layers" / "shared" / "such_market" / "config.py").is_file()
    # And the temporary worktree is gone afterwards
    assert not where.exists()


def test_cpu_quota_is_the_lambda_share_of_the_memory_size() -> None:
    # Given the cgroup v1 cpu controller (root on this machine; skipped where it is not writable)
    try:
        with cpu_quota(512) as group:
            # Then the quota is 512/1769 of one CPU per period
            assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
            assert (group / "cpu.cfs_quota_us").read_text().strip() == str(round(100_000 * 512 / 1769))
            # And a program run in it is accounted to it
            program = floor(("orjson",), dict(os.environ))
            assert run_program(program, cgroup=group).total_ms > 0
            assert int((group / "cpu.stat").read_text().split("nr_periods")[1].split()[0]) > 0
    except OSError as error:
        pytest.skip(f"no writable cgroup v1 cpu controller: {error}")
    assert not group.exists()


def test_memory_rule_takes_the_smallest_size_meeting_the_target() -> None:
    # A route: cold start within 1 s
    assert choose_memory("collection_nfts", {512: 1400.0, 1024: 700.0, 1769: 400.0}) == 1024
    assert choose_memory("collection_nfts", {512: 900.0, 1024: 500.0, 1769: 300.0}) == 512
    assert choose_memory("collection_nfts", {512: 4000.0, 1024: 2000.0, 1769: 1200.0}) == SIZES_MB[-1]
    # A consumer: nobody waits, within 3 s
    assert choose_memory("invalidate_cache", {512: 1400.0, 1024: 700.0, 1769: 400.0}) == 512


def test_report_renders_a_measure_with_its_own_columns() -> None:
    from bench.common import Measure
    from bench.report import markdown

    # Given a cold-start measure carrying its table row
    row = {"function": "health (read)", "total ms (min)": "300 (280)", "ratio (bar)": "**1.20x** (≤ 1.5x)"}
    measure = Measure(
        "coldstart", "coldstart.health", "cold start health", 300.0, "ms", passed=True, extra={"row": row}
    )
    env = {"date": "d", "python": "3.13", "cpu_count": 2, "processor": "p", "cache_allocator": "libc"}
    env |= {"quick": True, "groups": ["coldstart"], "run_seconds": 1}
    # When the report is written
    text = markdown([measure], env, {"passed": 1, "bars": 1, "failed": [], "problems": []})
    # Then the table has the row's columns and its cells, and the verdict
    assert "| function | total ms (min) | ratio (bar) | result |" in text
    assert "| health (read) | 300 (280) | **1.20x** (≤ 1.5x) | PASS |" in text
