"""Database servers of the tests' own, on spare ports, that the tests may stop and restart.

The shared local services must never be restarted, so the broker-restart tests start a
PostgreSQL (``initdb`` into a temporary directory, run as the ``postgres`` OS user when the
tests run as root) or a MariaDB (``mariadbd`` on an empty data directory, without grant
tables) of their own. Missing binaries skip the test with the reason, or fail it under
``MESSENGER_REQUIRE_SERVICES=1``. Use them through the session fixtures of ``conftest.py``
(``postgres_server``, ``mariadb_server``), which destroy them in a ``finally``: one server of
each kind for the session (starting one takes a second or more).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

try:
    import pymysql
except ImportError:  # the MariaDB server tests then skip
    pymysql = None

from messenger_core.testing.services import free_port, port_accepts, service_unavailable

__all__ = ["MariaDbServer", "PostgresServer"]

_START_TIMEOUT = 60.0


def _wait_until_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while port_accepts(port) and time.monotonic() < deadline:
        time.sleep(0.05)


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        found = shutil.which("pg_ctl")
        pg_ctl = candidates[-1] if candidates else found
        if pg_ctl is None:
            service_unavailable("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self._bin = Path(str(pg_ctl)).parent
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                service_unavailable("running as root, and there is no postgres OS user to run as")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="messenger-test-pg-"))
        if self._as_user:
            shutil.chown(self._dir, user="postgres")
        self._data = self._dir / "data"
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", "postgres", "-N")

    @property
    def dsn(self) -> str:
        """The DSN of its ``postgres`` database (user ``postgres``, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self._as_user, str(self._bin / program), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        log = str(self._dir / "server.log")
        self._run("pg_ctl", "-D", str(self._data), "-l", log, "-o", options, "-w", "start")

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped since."""
        return (self._data / "postmaster.pid").exists()

    def ensure_started(self) -> None:
        """Start the server unless it runs (a test that failed mid-outage left it stopped)."""
        if not self.running:
            self.start()

    def stop(self) -> None:
        """Stop the server at once, as a crash would (``pg_ctl stop -m immediate``)."""
        if (self._data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        _wait_until_closed(self.port)

    def restart(self, downtime: float) -> None:
        """Stop the server, wait ``downtime`` seconds, start it again."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


class MariaDbServer:
    """A MariaDB server in a temporary directory, listening on 127.0.0.1:``port``.

    It runs without grant tables (any user, no password) and with a ``test`` database.
    """

    def __init__(self) -> None:
        binary = shutil.which("mariadbd") or shutil.which("mysqld")
        if binary is None:
            for candidate in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld"):
                if os.access(candidate, os.X_OK):
                    binary = candidate
                    break
        if binary is None:
            service_unavailable("the MariaDB server binary (mariadbd) is not installed")
        if pymysql is None:
            service_unavailable(
                "the PyMySQL driver is not installed (messenger-transport-sql[mysql])"
            )
        self._binary = str(binary)
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="messenger-test-mariadb-"))
        self._data = self._dir / "data"
        self._data.mkdir()
        self._process: subprocess.Popen[bytes] | None = None
        self._created = False

    @property
    def dsn(self) -> str:
        """The DSN of its ``test`` database."""
        return f"mysql://root@127.0.0.1:{self.port}/test"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._start()
        if not self._created:
            # A new data directory's files are written out on a clean shutdown only: until
            # then a SIGKILL leaves a system tablespace the next start cannot read.
            self._created = True
            process, self._process = self._process, None
            assert process is not None
            process.terminate()
            process.wait(_START_TIMEOUT)
            _wait_until_closed(self.port)
            self._start()

    def _start(self) -> None:
        command = [
            self._binary,
            "--no-defaults",
            f"--datadir={self._data}",
            f"--socket={self._dir / 'mysqld.sock'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self._dir / 'mysqld.pid'}",
            f"--log-error={self._dir / 'error.log'}",
            "--skip-grant-tables",
            "--innodb-flush-log-at-trx-commit=2",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self._dir / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd did not start: {log}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            connection = pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            )
        except pymysql.err.OperationalError:
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            connection.close()
        return True

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped since."""
        return self._process is not None and self._process.poll() is None

    def ensure_started(self) -> None:
        """Start the server unless it runs (a test that failed mid-outage left it stopped)."""
        if not self.running:
            self.start()

    def stop(self) -> None:
        """Kill the server (SIGKILL, as a crash would)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        _wait_until_closed(self.port)

    def restart(self, downtime: float) -> None:
        """Kill the server, wait ``downtime`` seconds, start it again."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
