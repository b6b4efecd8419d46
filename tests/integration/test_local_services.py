"""The embedded Valkey as dev, tests and the bench start it: ready when it answers, on jemalloc when present."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from local.services import EmbeddedValkey, jemalloc_library


@pytest.fixture
def persistent() -> Iterator[EmbeddedValkey]:
    # key-load-delay (µs per key) stretches the replay of the append-only file, as a big one would take
    server = EmbeddedValkey(extra_args=("--appendonly", "yes", "--appendfsync", "always", "--key-load-delay", "500"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_restarted_server_is_ready_only_once_it_has_loaded_its_data(persistent: EmbeddedValkey) -> None:
    client = redis.Redis.from_url(persistent.url, retry=None)
    pipe = client.pipeline(transaction=False)
    for index in range(2000):
        pipe.set(f"k{index}", index)
    pipe.execute()
    assert persistent.process is not None
    persistent.process.terminate()
    persistent.process.wait(10)
    persistent.process = None
    started = time.monotonic()
    persistent.start()
    # 2,000 keys at 0.5 ms each: the server accepted connections long before it could answer
    assert time.monotonic() - started > 0.5
    assert client.dbsize() == 2000
    assert client.set("after", 1)
    client.close()


def test_the_server_runs_on_jemalloc_when_the_system_has_it() -> None:
    if jemalloc_library() is None:
        pytest.skip("libjemalloc2 is not installed (make install adds it where it can)")
    server = EmbeddedValkey().start()
    try:
        assert server.process is not None
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert server.allocator == "jemalloc"
        assert "libjemalloc" in maps
    finally:
        server.stop()


def test_without_jemalloc_the_server_runs_on_libc_and_says_so() -> None:
    server = EmbeddedValkey(preload=None).start()
    try:
        assert server.process is not None
        assert "libjemalloc" not in Path(f"/proc/{server.process.pid}/maps").read_text()
        assert server.allocator == "libc"
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
