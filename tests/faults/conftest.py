"""A private PostgreSQL cluster that tests may stop, crash and restart.

The shared server on 127.0.0.1:5432 serves every test worker at once and must never be touched;
this one belongs to one worker: its own directory, its own port, trust auth, fsync off.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path(os.environ.get("BOTHUB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user the server runs as when we are root (it refuses root)
START_TIMEOUT = 30  # seconds; pg_ctl waits for the server to accept connections


def _ephemeral_floor() -> int:
    """Ports the kernel hands out for `bind(0)` and outgoing connections start here; a port
    below it cannot be taken by another test's socket while our server is down."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(15000, floor) if floor > 15100 else random.randrange(20000, 30000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the private PostgreSQL cluster")


class PrivateCluster:
    """One throwaway PostgreSQL cluster, driven with initdb and pg_ctl."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = 0
        self._as_root = os.geteuid() == 0

    # --- commands -------------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float = START_TIMEOUT + 15) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", PG_USER, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}\n{self.server_log()}")

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", *args, "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(START_TIMEOUT))

    def init(self) -> None:
        if self._as_root:
            shutil.chown(self.root, PG_USER, PG_USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# bothub tests: a private, disposable cluster\n"
                       "listen_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       # Speed without losing commits to a crash-like stop: the WAL still
                       # reaches the OS at each commit (synchronous_commit=off would not).
                       "fsync = off\n"
                       "max_connections = 30\nshared_buffers = 16MB\n")

    def start(self) -> None:
        self._set_port_if_needed()
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("restart", "-m", mode)

    def ensure_running(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            self.start()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _set_port_if_needed(self) -> None:
        """The port is chosen once: a restarted server comes back where the hub expects it."""
        if self.port:
            return
        self.port = _free_port()
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"port = {self.port}\n")

    # --- databases ----------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"bothub_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def server_log(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no server log)"


def _start_cluster() -> PrivateCluster:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} "
                    "(set BOTHUB_TEST_PG_BIN to their directory)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root and `runuser` is missing: PostgreSQL refuses to run as root")
    # Short, and outside pytest's deep tmp tree: the Unix socket path must stay under 107 bytes.
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="bothub-pg-")))
    try:
        cluster.init()
        for attempt in range(3):  # a port taken between the probe and the start: another one
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2 or "could not bind" not in cluster.server_log():
                    raise
                cluster.port = 0
    except BaseException:
        cluster.destroy()
        raise
    return cluster


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL server of this module's own (per xdist worker), stopped and removed after."""
    cluster = _start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def restartable_postgres_url(private_postgres: PrivateCluster) -> Iterator[str]:
    """A fresh database in the private cluster; the cluster is running again after the test,
    whatever the test did to it."""
    private_postgres.ensure_running()
    yield private_postgres.create_database()
    private_postgres.ensure_running()
