"""What a worker on SQLite imports: only the SQLite dialect and driver (issue 8, worker memory).

SQLAlchemy imports a dialect's package for every option or type naming it; the PostgreSQL and
MySQL dialects (and their drivers) cost a SQLite worker megabytes it never uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FOREIGN = (
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.mysql",
    "psycopg",
    "psycopg2",
    "pymysql",
    "asyncpg",
)

_PROGRAM = """
import json, sys

import attrs
from messenger_core import Messenger

@attrs.frozen
class Ping:
    id: int

db = sys.argv[1]
messenger = Messenger(config={
    "transports": {"async": {"dsn": f"sqlite:///{db}?queue_name=async&fetch_size=10"}},
    "routing": {"__main__.Ping": "async"},
})
handled = []

@messenger.handler
def on_ping(message: Ping) -> None:
    handled.append(message.id)

for number in range(3):
    messenger.bus.dispatch(Ping(number))
transport = messenger.get_transport("async")
transport.message_count()
transport.all()
transport.find("1")
messenger.worker(["async"]).run(limit=3)
assert handled == [0, 1, 2], handled
print(json.dumps(sorted(sys.modules)))
"""


def test_a_sqlite_worker_imports_no_postgresql_or_mysql_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "messages.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "sqlalchemy.dialects.sqlite" in modules  # the check itself works
    loaded = [name for name in modules if name.split(".")[0] in FOREIGN or name.startswith(FOREIGN)]
    assert loaded == []


def test_a_worker_that_meets_no_mistake_loads_no_error_path_module(tmp_path: Path) -> None:
    # "Did you mean" (difflib) and TOML (an embedded app reads no file) are loaded only when
    # needed: together about 300 KB of a worker's resident memory.
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "messages.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "messenger_core.worker" in modules  # the check itself works
    assert [name for name in modules if name in ("difflib", "tomllib")] == []
