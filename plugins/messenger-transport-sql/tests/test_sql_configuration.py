"""Options, DSNs, entry points, the table layout: what needs no database server."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from messenger_transport_sql import (
    SqlTransport,
    SqlTransportFactory,
    SqlTransportOptions,
    parse_options,
)
from messenger_transport_sql.engine import create_engine, database_identity, sqlalchemy_url
from messenger_transport_sql.schema import RESERVE_INDEX, build_table, doctrine_index_name
from sql_test_support import make_serializer, order

from messenger_core.dsn import Dsn
from messenger_core.errors import ConfigurationError, TransportError


def test_defaults_are_symfony_s_but_for_the_fetch_size() -> None:
    options = parse_options({}, "postgresql")
    assert options == SqlTransportOptions()
    assert (options.table_name, options.queue_name) == ("messenger_messages", "default")
    assert (options.redeliver_timeout, options.auto_setup) == (3600, True)
    # Symfony reserves one row per receive; ten consume several times faster (README).
    assert options.fetch_size == 10
    assert (options.use_notify, options.check_delayed_interval) == (True, 60_000)


def test_dsn_strings_and_typed_values_are_parsed() -> None:
    options = parse_options(
        {
            "queue_name": "async",
            "redeliver_timeout": "1.5",
            "auto_setup": "false",
            "fetch_size": "100",
            "use_notify": "0",
            "get_notify_timeout": 250,
            "check_delayed_interval": "0",
        },
        "postgresql",
    )
    assert options.queue_name == "async"
    assert options.redeliver_timeout == 1.5
    assert options.auto_setup is False
    assert options.fetch_size == 100
    assert options.use_notify is False
    assert (options.get_notify_timeout, options.check_delayed_interval) == (250, 0)


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_options({"queue": "async"}, "sqlite")
    assert "'queue'" in str(raised.value)
    assert "queue_name" in str(raised.value)
    assert "redeliver_timeout" in str(raised.value)


def test_an_unknown_option_names_the_dsn_without_its_password() -> None:
    dsn = Dsn.parse("postgresql://app:s3cret@db.example/shop?queue_nme=async")
    with pytest.raises(ConfigurationError) as raised:
        parse_options(dsn.options, "postgresql", dsn=dsn)
    assert "'queue_nme' (did you mean 'queue_name'?)" in str(raised.value)
    assert "postgresql://app:***@db.example/shop" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_postgresql_options_are_refused_elsewhere() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        parse_options({"use_notify": "true"}, "mysql")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("fetch_size", "0"),
        ("fetch_size", "ten"),
        ("fetch_size", True),
        ("fetch_size", 2.5),
        ("fetch_size", 1_000_000),
        ("redeliver_timeout", "0"),
        ("redeliver_timeout", "nan"),
        ("auto_setup", "maybe"),
        ("table_name", "messages; DROP TABLE users"),
        ("table_name", "1messages"),
        ("queue_name", ""),
        ("queue_name", "q" * 191),
    ],
)
def test_a_bad_value_is_a_configuration_error(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        parse_options({name: value}, "sqlite")


def test_driver_options_reach_the_url() -> None:
    dsn = Dsn.parse("postgresql://app:secret@db.example:5433/shop?sslmode=require")
    url = sqlalchemy_url(dsn, parse_options(dsn.options, "postgresql"))
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.username) == ("db.example", 5433, "shop", "app")
    assert url.query["sslmode"] == "require"
    assert "secret" not in repr(url)


def test_mysql_urls_use_pymysql_and_utf8mb4() -> None:
    for scheme in ("mysql", "mariadb"):
        url = sqlalchemy_url(Dsn.parse(f"{scheme}://root@localhost/test"), SqlTransportOptions())
        assert url.drivername == "mysql+pymysql"
        assert url.query["charset"] == "utf8mb4"


@pytest.mark.parametrize(
    ("dsn", "database"),
    [
        ("sqlite:///var/messenger.db", "var/messenger.db"),
        ("sqlite:////srv/queue/messenger.db", "/srv/queue/messenger.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
    ],
)
def test_sqlite_paths_follow_sqlalchemy(dsn: str, database: str) -> None:
    assert sqlalchemy_url(Dsn.parse(dsn), SqlTransportOptions()).database == database


@pytest.mark.parametrize(
    "dsn",
    [
        "sqlite://somehost/messenger.db",
        "postgresql+asyncpg://localhost/test",
        "mysql+mysqldb://localhost/test",
        "postgresql://localhost",
        "oracle://localhost/test",
    ],
)
def test_unsupported_dsns_are_refused(dsn: str) -> None:
    with pytest.raises(ConfigurationError):
        SqlTransportFactory().create(Dsn.parse(dsn), {}, make_serializer())


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "psycopg" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigurationError, match=r"messenger-transport-sql\[postgresql\]"):
        SqlTransportFactory().create(Dsn.parse("postgresql://h/db"), {}, make_serializer())


def test_the_password_never_shows() -> None:
    # reconnect_timeout: the send gives up after a second, not after the default ten; the
    # error it raises is the same.
    dsn = Dsn.parse(
        "postgresql://app:s3cr3t-pw@127.0.0.1:1/test?connect_timeout=2&reconnect_timeout=1"
    )
    with pytest.raises(ConfigurationError) as raised:
        SqlTransportFactory().create(dsn, {"bogus": 1}, make_serializer())
    assert "s3cr3t-pw" not in str(raised.value)

    transport = SqlTransportFactory().create(dsn, {}, make_serializer())
    try:
        assert "s3cr3t-pw" not in repr(transport)
        with pytest.raises(TransportError) as failed:  # nothing listens on port 1
            transport.send(order(1))
        assert "s3cr3t-pw" not in str(failed.value)
        assert "***" in str(failed.value)
    finally:
        transport.close()


def test_entry_points_publish_the_factory_for_every_scheme() -> None:
    points = {
        point.name: point.value
        for point in importlib.metadata.entry_points(group="messenger.transports")
    }
    for scheme in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        assert points[scheme] == "messenger_transport_sql.factory:SqlTransportFactory"


def test_index_names_are_doctrine_s() -> None:
    # The names a Symfony application's Doctrine schema gives messenger_messages' indexes.
    assert doctrine_index_name("messenger_messages", "queue_name") == "IDX_75EA56E0FB7336F0"
    assert doctrine_index_name("messenger_messages", "available_at") == "IDX_75EA56E0E3BD61CE"
    assert doctrine_index_name("messenger_messages", "delivered_at") == "IDX_75EA56E016BA31DB"


def test_the_table_has_symfony_s_columns_and_indexes(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'layout.db'}")
    build_table("messenger_messages").create(engine)
    inspector = sa.inspect(engine)
    columns = {column["name"]: column for column in inspector.get_columns("messenger_messages")}
    assert list(columns) == [
        "id",
        "body",
        "headers",
        "queue_name",
        "created_at",
        "available_at",
        "delivered_at",
    ]
    assert [name for name, column in columns.items() if column["nullable"]] == ["delivered_at"]
    indexes = {
        index["name"]: tuple(index["column_names"])
        for index in inspector.get_indexes("messenger_messages")
    }
    assert indexes == {
        "IDX_75EA56E0FB7336F0": ("queue_name",),
        "IDX_75EA56E0E3BD61CE": ("available_at",),
        "IDX_75EA56E016BA31DB": ("delivered_at",),
        doctrine_index_name("messenger_messages", *RESERVE_INDEX): RESERVE_INDEX,
    }
    engine.dispose()


def test_database_identity_tells_databases_apart(tmp_path: Path) -> None:
    same = database_identity(sa.make_url("postgresql+psycopg://a@localhost/test"))
    assert same == database_identity(sa.make_url("postgresql+psycopg2://b:pw@127.0.0.1:5432/test"))
    assert same != database_identity(sa.make_url("postgresql+psycopg://a@localhost/other"))
    file = tmp_path / "a.db"
    assert database_identity(sa.make_url(f"sqlite:///{file}")) == database_identity(
        sa.make_url(f"sqlite:///{tmp_path}/./a.db")
    )


def test_the_transport_needs_an_engine_set_up_for_it(tmp_path: Path) -> None:
    plain = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with pytest.raises(ConfigurationError, match="create_engine"):
        SqlTransport(plain, make_serializer())
    plain.dispose()


def test_transports_can_share_an_engine(tmp_path: Path) -> None:
    dsn = Dsn.parse(f"sqlite:///{tmp_path / 'shared.db'}")
    engine = create_engine(dsn, SqlTransportOptions())
    emails = SqlTransport(
        engine, make_serializer(), parse_options({"queue_name": "emails"}, "sqlite")
    )
    sms = SqlTransport(engine, make_serializer(), parse_options({"queue_name": "sms"}, "sqlite"))
    emails.send(order(1))
    sms.send(order(2))
    assert [envelope.message.id for envelope in sms.get()] == [2]
    assert [envelope.message.id for envelope in emails.get()] == [1]
    emails.close()
    sms.close()
    engine.dispose()
