"""The transactional outbox: messages commit and roll back with the application's data."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from messenger_transport_sql import SqlTransport, outbox
from messenger_transport_sql.engine import sqlalchemy_url
from messenger_transport_sql.options import parse_options
from sql_test_support import Database, Order, order, unique_table
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError
from messenger_core.stamps import TransportMessageIdStamp


class Boom(Exception):
    """The application fails after sending."""


@pytest.fixture
def app(database: Database) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """The application's own engine on the test database (SQLAlchemy's defaults: real
    transactions), and a business table."""
    dsn = database.dsn()
    engine = sa.create_engine(sqlalchemy_url(dsn, parse_options({}, database.backend)))
    orders = sa.Table(
        unique_table(),
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    )
    orders.create(engine)
    yield engine, orders
    orders.drop(engine)
    engine.dispose()


def _receive(transport: SqlTransport, timeout: float = 5.0) -> list[Envelope]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = transport.get()
        if received:
            return received
    return []


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_commit_keeps_the_message_and_the_data(
    database: Database, app: tuple[sa.Engine, sa.Table]
) -> None:
    engine, orders = app
    transport = database.transport()
    # Set up first: on SQLite, creating the table while the application holds the database's
    # write lock (below) would wait for it.
    transport.setup()
    with engine.begin() as connection:
        connection.execute(sa.insert(orders).values(id=1))
        with outbox(connection):
            sent = transport.send(order(1, "placed"))
        assert sent.last(TransportMessageIdStamp) is not None
        assert transport.message_count() == 0, "not visible before the commit"
    assert _count(engine, orders) == 1
    received = _receive(transport)
    assert [envelope.message for envelope in received] == [Order(1, "placed")]


def test_rollback_drops_the_message_with_the_data(
    database: Database, app: tuple[sa.Engine, sa.Table]
) -> None:
    engine, orders = app
    transport = database.transport()
    transport.setup()

    def place_orders_then_fail() -> None:
        with engine.begin() as connection:
            connection.execute(sa.insert(orders).values(id=1))
            with outbox(connection):
                transport.send_batch([order(1), order(2)])
            raise Boom

    with pytest.raises(Boom):
        place_orders_then_fail()
    assert _count(engine, orders) == 0
    assert transport.message_count() == 0
    assert transport.get() == []


class Base(DeclarativeBase):
    pass


def test_a_session_works_too(database: Database, app: tuple[sa.Engine, sa.Table]) -> None:
    engine, orders = app
    transport = database.transport()

    with Session(engine) as session, session.begin():
        session.execute(sa.insert(orders).values(id=1))
        with outbox(session):
            transport.send(order(1, "kept"))

    def place_order_then_fail() -> None:
        with Session(engine) as session, session.begin():
            session.execute(sa.insert(orders).values(id=2))
            with outbox(session):
                transport.send(order(2, "dropped"))
            raise Boom

    with pytest.raises(Boom):
        place_order_then_fail()

    assert _count(engine, orders) == 1
    received = _receive(transport)
    assert [envelope.message for envelope in received] == [Order(1, "kept")]
    transport.ack(received[0])
    assert transport.get() == []


def test_outside_the_block_the_transport_sends_on_its_own(
    database: Database, app: tuple[sa.Engine, sa.Table]
) -> None:
    engine, _ = app
    transport = database.transport()

    def send_after_the_block_then_fail() -> None:
        with engine.begin() as connection:
            with outbox(connection):
                pass
            # (On SQLite the application must not hold the write lock here: our own
            # connection would wait for it.)
            transport.send(order(1, "independent"))
            raise Boom

    with pytest.raises(Boom):
        send_after_the_block_then_fail()
    assert [envelope.message for envelope in _receive(transport)] == [Order(1, "independent")]


def test_another_database_cannot_join_the_transaction(database: Database, tmp_path: object) -> None:
    transport = database.transport()
    other = sa.create_engine("sqlite://")
    with other.begin() as connection, outbox(connection), pytest.raises(ConfigurationError):
        transport.send(order(1))
    other.dispose()


def test_outbox_takes_only_connections_and_sessions() -> None:
    with pytest.raises(TypeError), outbox("postgresql://localhost/db"):  # type: ignore[arg-type]
        pass


class Placed(Base):
    __tablename__ = "outbox_orm_orders"
    id: Mapped[int] = mapped_column(primary_key=True)


def test_an_orm_unit_of_work_commits_with_its_message(database_factory: object) -> None:
    database: Database = database_factory("sqlite")  # type: ignore[operator]
    engine = sa.create_engine(sqlalchemy_url(database.dsn(), parse_options({}, "sqlite")))
    Base.metadata.create_all(engine)
    transport = database.transport()
    with Session(engine) as session, session.begin():
        session.add(Placed(id=5))
        with outbox(session):
            transport.send(Envelope(Order(5, "orm")))
    received = _receive(transport)
    assert [envelope.message for envelope in received] == [Order(5, "orm")]
    engine.dispose()
