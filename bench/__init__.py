"""The benchmark suite of ENGINEERING.md §5: ``make bench`` (= ``python -m bench``).

Everything runs in one process on this machine (the stampede adds 4 worker processes, the cold-start
group fresh interpreters), against real PostgreSQL and Valkey: the embedded servers of
``local.services`` unless ``DATABASE_URL`` / ``REDIS_URL`` name others. The bench creates its own
database (``such_market_bench``) on the PostgreSQL server and **flushes the Redis database it is
given**, so point it at nothing you care about.

Groups (one module each): ``hit`` (cached reads vs a bare GET), ``db`` (pages served from PostgreSQL),
``stampede`` (protected fills, Zipf mix), ``invalidation`` (events, index sets vs ``KEYS``),
``coldstart`` (every function's whole-process cold start vs its libraries, A/B, memory sizes),
``ownership`` (summary triggers vs row-level ones),
``analytics`` (reported percentiles vs exact ones). Results go to ``bench/results/latest.json`` (every
raw number) and ``bench/results/latest.md`` (the table of bars).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared"
FUNCTIONS = ROOT / "functions"


def _add_import_paths() -> None:
    """Import the layer and handler modules exactly as Lambda does (same as pytest's ``pythonpath``)."""
    wanted = [str(LAYER), *(str(path) for path in sorted(FUNCTIONS.iterdir()) if path.is_dir()), str(ROOT)]
    for entry in reversed(wanted):
        if entry not in sys.path:
            sys.path.insert(0, entry)


_add_import_paths()
