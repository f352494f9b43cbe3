"""Real ``messenger consume`` processes through a database outage, and at start-up without one.

PostgreSQL (``pg_ctl stop -m immediate``) and MariaDB (SIGKILL) servers of the tests' own are
stopped for a few seconds under a consuming worker; a SQLite file is locked by another
connection. The worker must stay alive, carry on once the database is back, and handle every
message (at least once: none lost). A worker started against a database that is not there
exits with one readable line.
"""

from __future__ import annotations

import collections
import os
import re
import sqlite3
import time
from pathlib import Path

import pytest
from messenger_transport_sql import SqlTransport, SqlTransportFactory, reconnect
from servers import MariaDbServer, PostgresServer
from sql_test_support import make_serializer, order, unique_table

from messenger_core.dsn import Dsn
from messenger_core.testing.processes import MessengerProcess, messenger_command
from messenger_core.testing.services import free_port

pytestmark = pytest.mark.slow

APP_DIR = Path(__file__).parent / "restart_app"
DEADLINE = 60.0
"""Seconds any one wait may take before the test fails (a loaded machine is slow)."""
DOWNTIME = 3.0

CONFIG = """\
[messenger]
app = "restart_app:messenger"

[messenger.transports.jobs]
dsn = "{dsn}"
"""

Server = PostgresServer | MariaDbServer


@pytest.fixture(params=["postgresql", "mariadb"])
def running_server(request: pytest.FixtureRequest) -> Server:
    """A database server of the tests' own (conftest), restarted by these tests; started
    again if an earlier test failed while it was down."""
    name = "postgres_server" if request.param == "postgresql" else "mariadb_server"
    server: Server = request.getfixturevalue(name)
    server.ensure_started()
    return server


class Worker(MessengerProcess):
    """A ``messenger consume jobs`` process, its output in ``worker.out``."""

    def __init__(self, directory: Path, dsn: str, *arguments: str) -> None:
        self.state = directory
        config = directory / "messenger.toml"
        config.write_text(CONFIG.format(dsn=dsn), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
        env["MESSENGER_RESTART_CONFIG"] = str(config)
        env["MESSENGER_RESTART_STATE"] = str(directory)
        command = messenger_command("consume", "jobs", *arguments, config=config)
        super().__init__(
            command, directory / "worker.out", env=env, cwd=directory, timeout=DEADLINE
        )

    def handled(self) -> list[int]:
        log = self.state / "handled.log"
        if not log.exists():
            return []
        return [int(line.split()[0]) for line in log.read_text().splitlines() if line.strip()]

    def wait_until_handled(self, ids: set[int]) -> None:
        try:
            self.wait_until(lambda: ids <= set(self.handled()), f"{len(ids)} messages handled")
        except AssertionError as failed:
            missing = sorted(ids - set(self.handled()))
            raise AssertionError(f"not handled: {missing}; {failed}") from None


def _producer(dsn: Dsn) -> SqlTransport:
    transport = SqlTransportFactory().create(dsn, {}, make_serializer())
    transport.setup()
    return transport


def _dsn(base: str, **options: str) -> Dsn:
    query = {"table_name": unique_table(), "queue_name": "jobs", **options}
    return Dsn.parse(base + "?" + "&".join(f"{k}={v}" for k, v in query.items()))


def _check_exactly_or_at_least_once(handled: list[int], expected: int) -> None:
    counts = collections.Counter(handled)
    missing = sorted(set(range(expected)) - set(counts))
    assert not missing, f"lost: {missing}"
    assert set(counts) == set(range(expected)), f"unexpected ids: {sorted(counts)}"


def test_a_worker_carries_on_through_a_database_restart(
    running_server: Server, tmp_path: Path
) -> None:
    server = running_server
    # redeliver_timeout: a reservation whose reply the outage swallowed comes back soon.
    dsn = _dsn(server.dsn, redeliver_timeout="5")
    producer = _producer(dsn)
    worker = Worker(tmp_path, str(dsn), "--time-limit", "300", "--sleep", "0.1")
    try:
        producer.send_batch([order(number) for number in range(40)])
        worker.wait_until_handled(set(range(5)))

        server.stop()
        try:
            deadline = time.monotonic() + DOWNTIME
            while time.monotonic() < deadline:
                worker.assert_running()
                time.sleep(0.1)
        finally:
            server.start()

        # The producer's connection broke too: sending reconnects.
        producer.send_batch([order(number) for number in range(40, 60)])
        worker.wait_until_handled(set(range(60)))
        worker.assert_running()
        output = worker.output()
        assert output.count("reconnecting with backoff") == 1, output
        assert "answers again" in output, output
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.output()
    assert "Traceback" not in worker.output(), worker.output()
    _check_exactly_or_at_least_once(worker.handled(), 60)


def test_sigterm_stops_a_worker_at_once_while_the_database_is_down(
    running_server: Server, tmp_path: Path
) -> None:
    server = running_server
    dsn = _dsn(server.dsn)
    producer = _producer(dsn)
    worker = Worker(tmp_path, str(dsn), "--time-limit", "300", "--sleep", "0.1")
    try:
        producer.send(order(1))
        worker.wait_until_handled({1})
        server.stop()
        # Long enough for the backoff to reach its longest delay between attempts.
        time.sleep(reconnect.MAX_DELAY + 2)
        worker.assert_running()
        stopping = time.monotonic()
        code = worker.stop()
        took = time.monotonic() - stopping
    finally:
        server.ensure_started()
        worker.stop()
        producer.close()
    assert code == 0, worker.output()
    # Generous, but shorter than one backoff delay: the stop did not wait one out.
    assert took < reconnect.MAX_DELAY - 0.5, f"SIGTERM took {took:.1f} s:\n{worker.output()}"


def test_a_worker_carries_on_while_a_sqlite_file_is_locked(tmp_path: Path) -> None:
    database = tmp_path / "messages.db"
    dsn = _dsn(f"sqlite:///{database}")
    producer = _producer(dsn)
    worker = Worker(tmp_path, str(dsn), "--time-limit", "300", "--sleep", "0.1")
    try:
        producer.send_batch([order(number) for number in range(20)])
        worker.wait_until_handled(set(range(3)))
        locker = sqlite3.connect(database, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            deadline = time.monotonic() + DOWNTIME
            while time.monotonic() < deadline:
                worker.assert_running()
                time.sleep(0.1)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        producer.send_batch([order(number) for number in range(20, 30)])
        worker.wait_until_handled(set(range(30)))
        worker.assert_running()
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.output()
    _check_exactly_or_at_least_once(worker.handled(), 30)


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_a_worker_started_without_its_database_says_so_in_one_line(
    scheme: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    dsn = f"{scheme}://app:s3cr3t@127.0.0.1:{port}/shop?reconnect_timeout=1.5"
    with Worker(tmp_path, dsn, "--time-limit", "120") as worker:
        code = worker.wait()  # it gives up
    output = worker.output()
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("messenger: error:")]
    assert len(errors) == 1, output
    error = errors[0]
    assert f"{scheme}://app:***@127.0.0.1:{port}/shop" in error
    assert re.search(r"tried for \d+\.\d s", error), error
    assert "check that the database server is running" in error, error
    assert "s3cr3t" not in output
    assert "Traceback" not in output
    assert "acknowledge" not in output, output
    assert "pending" not in output, output
