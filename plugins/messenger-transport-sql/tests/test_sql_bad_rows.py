"""Real ``messenger consume`` processes against garbage written straight into the table.

A row no worker can read must never stop a worker, nor block its queue: each one is parked in
the failure transport with its raw columns and the reason, and the good message queued after
them is handled (issue 9, point 2). Before, each of these rows killed every worker that
received it: a headers column nested 100,000 levels deep (RecursionError), a SQLite BLOB body
that is not UTF-8 (AttributeError in the codec), SQLite TEXT holding invalid UTF-8 (raised by
the driver while fetching), and a body nested 100,000 levels deep.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from sql_test_support import Database
from sql_worker_support import PING, WorkerWorld

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DEEP = "[" * 100_000 + "]" * 100_000
GOOD_HEADERS = json.dumps({"type": PING, "Content-Type": "application/json"})


@attrs.frozen
class BadRow:
    """A row to write as found (``body``/``headers`` as SQL expressions or values)."""

    name: str
    body: Any
    headers: Any
    reason: str
    """A piece of the reason the parked copy must carry."""
    raw: Callable[[dict[str, Any], dict[str, str]], bool]
    """Whether the parked row (body column, headers) keeps the raw payload."""


def _body_is(expected: bytes) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    def check(row: dict[str, Any], headers: dict[str, str]) -> bool:
        body = row["body"]
        if headers.get("X-Messenger-Body-Encoding") == "base64":
            return base64.b64decode(body) == expected
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        return data == expected

    return check


def _raw_headers_are(expected: bytes) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    def check(row: dict[str, Any], headers: dict[str, str]) -> bool:
        if "X-Messenger-Raw-Headers-Base64" in headers:
            return base64.b64decode(headers["X-Messenger-Raw-Headers-Base64"]) == expected
        return headers.get("X-Messenger-Raw-Headers", "").encode("utf-8") == expected

    return check


def _bad_rows(backend: str) -> list[BadRow]:
    rows = [
        BadRow(
            "deep headers",
            "{}",
            DEEP,
            "recursion depth",
            _raw_headers_are(DEEP.encode()),
        ),
        BadRow(
            "deep body",
            DEEP,
            GOOD_HEADERS,
            "nested too deeply",
            _body_is(DEEP.encode()),
        ),
    ]
    if backend == "sqlite":
        rows += [
            BadRow(
                "blob body",
                b"\xff\xfe{not utf-8",
                GOOD_HEADERS,
                "UTF-8",
                _body_is(b"\xff\xfe{not utf-8"),
            ),
            BadRow(
                "invalid text body",
                sqlite3.Binary(b'{"id": "\xc3\x28"}'),  # written as TEXT below
                GOOD_HEADERS,
                "UTF-8",
                _body_is(b'{"id": "\xc3\x28"}'),
            ),
            BadRow(
                "invalid text headers",
                "{}",
                sqlite3.Binary(b'{"type": "\xff"}'),  # written as TEXT below
                "headers column",
                _raw_headers_are(b'{"type": "\xff"}'),
            ),
        ]
    return rows


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_file(database: Database) -> str:
    engine = database.engine()
    try:
        return str(engine.url.database)
    finally:
        engine.dispose()


def _insert_rows(database: Database, rows: list[tuple[Any, Any]]) -> None:
    """Insert (body, headers) rows into queue ``async`` in order, as a foreign producer would."""
    now = _now()
    if database.backend == "sqlite":
        stamp = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond:06d}"
        with sqlite3.connect(_sqlite_file(database)) as connection:
            for body, headers in rows:
                # Binary values are written as TEXT holding those bytes, unless the row wants a
                # BLOB (plain bytes).
                body_sql = "CAST(? AS TEXT)" if isinstance(body, memoryview) else "?"
                headers_sql = "CAST(? AS TEXT)" if isinstance(headers, memoryview) else "?"
                connection.execute(
                    "INSERT INTO messenger_messages "
                    "(body, headers, queue_name, created_at, available_at) "
                    f"VALUES ({body_sql}, {headers_sql}, 'async', ?, ?)",
                    (body, headers, stamp, stamp),
                )
        return
    for body, headers in rows:
        database.execute(
            "INSERT INTO {table} (body, headers, queue_name, created_at, available_at) "
            "VALUES (:body, :headers, 'async', :now, :now)",
            {"body": body, "headers": headers, "now": now},
        )


def _parked(database: Database) -> list[dict[str, Any]]:
    if database.backend == "sqlite":
        with sqlite3.connect(_sqlite_file(database)) as connection:
            connection.row_factory = sqlite3.Row
            found = connection.execute(
                "SELECT id, CAST(body AS BLOB) AS body, headers FROM messenger_messages "
                "WHERE queue_name = 'failed' ORDER BY id"
            ).fetchall()
            return [dict(row) for row in found]
    rows = database.execute(
        "SELECT id, body, headers FROM {table} WHERE queue_name = 'failed' ORDER BY id"
    )
    return [{"id": row[0], "body": row[1], "headers": row[2]} for row in rows]


def _error_details(headers: dict[str, str]) -> str:
    return " ".join(value for name, value in headers.items() if "ErrorDetailsStamp" in name)


def test_bad_rows_are_parked_and_the_worker_keeps_going(database: Database, tmp_path: Path) -> None:
    world = WorkerWorld(database, tmp_path)
    setup = world.run("setup-transports")
    assert setup.returncode == 0, setup.stderr
    bad = _bad_rows(database.backend)
    _insert_rows(
        database,
        [(row.body, row.headers) for row in bad] + [('{"id": "good"}', GOOD_HEADERS)],
    )

    worker = world.run("consume", "async", "--limit", str(len(bad) + 1), "--time-limit", "90")

    output = worker.stdout + worker.stderr
    assert worker.returncode == 0, output
    assert world.events() == ["handled good"], output
    parked = _parked(database)
    assert len(parked) == len(bad), output
    for row, found in zip(bad, parked, strict=True):
        headers = json.loads(found["headers"])
        details = _error_details(headers)
        assert "MessageDecodingError" in details, (row.name, details)
        assert row.reason in details, (row.name, details[:500])
        assert row.raw(found, headers), (row.name, found["body"][:100], list(headers))
    assert database.execute("SELECT id FROM {table} WHERE queue_name = 'async'") == []
