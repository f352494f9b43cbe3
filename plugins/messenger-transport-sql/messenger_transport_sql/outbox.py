"""The transactional outbox: send messages inside the application's own database transaction.

Inside ``with outbox(connection_or_session):`` every SQL transport whose table lives in that
connection's database inserts its messages through that connection, without committing. The
messages are committed (and become visible to workers) with the application's data, or rolled
back with it::

    from messenger_transport_sql import outbox

    with Session(engine) as session, session.begin():
        session.add(Order(id=42))
        with outbox(session):
            messenger.bus.dispatch(OrderPlaced(order_id=42))
    # committed: the order and the message; an exception above would have dropped both

A transport on another database cannot join the transaction: sending to it inside the block is
a :class:`~messenger_core.errors.ConfigurationError` rather than a silent non-atomic send.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["current_outbox_connection", "outbox"]


@runtime_checkable
class _SessionLike(Protocol):
    def connection(self) -> sa.Connection: ...


_current: ContextVar[sa.Connection | Session | None] = ContextVar(
    "messenger_transport_sql_outbox", default=None
)


@contextmanager
def outbox(connection_or_session: sa.Connection | Session) -> Iterator[None]:
    """Send SQL transport messages through ``connection_or_session`` while the block runs.

    The caller owns the transaction: nothing is committed here. Blocks nest (the innermost
    wins) and are private to the current thread or asyncio task.
    """
    if not isinstance(connection_or_session, sa.Connection | _SessionLike):
        raise TypeError(
            "outbox() takes a SQLAlchemy Connection or Session, "
            f"got {type(connection_or_session).__name__}"
        )
    token = _current.set(connection_or_session)
    try:
        yield
    finally:
        _current.reset(token)


def current_outbox_connection() -> sa.Connection | None:
    """The connection of the innermost active :func:`outbox` block, if any.

    For a session this is the connection of its current transaction (begun if needed).
    """
    target = _current.get()
    if target is None or isinstance(target, sa.Connection):
        return target
    return target.connection()
