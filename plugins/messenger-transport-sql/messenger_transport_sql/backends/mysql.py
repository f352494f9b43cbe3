"""MySQL and MariaDB: statements through SQLAlchemy Core, setup serialized by a named lock."""

from __future__ import annotations

from typing import ClassVar

import sqlalchemy as sa

from messenger_transport_sql.backends import Backend

__all__ = ["MySqlBackend"]


class MySqlBackend(Backend):
    """MySQL 5.7+/8 and MariaDB through PyMySQL (the base class's Core behaviour)."""

    name: ClassVar[str] = "mysql"

    def skip_locked(self, dialect: sa.Dialect) -> bool:
        # Without SKIP LOCKED, consumers wait for each other's reservations (still correct).
        version = dialect.server_version_info or (0,)
        if getattr(dialect, "is_mariadb", False):
            return version >= (10, 6)
        return version >= (8, 0, 1)

    def lock_setup(self, connection: sa.Connection, name: str) -> None:
        connection.exec_driver_sql("DO GET_LOCK(%s, 60)", (name,))

    def unlock_setup(self, connection: sa.Connection, name: str) -> None:
        # A session lock outlives the transaction: release it explicitly.
        connection.exec_driver_sql("DO RELEASE_LOCK(%s)", (name,))
        connection.commit()
