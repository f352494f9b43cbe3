"""Django integration: the application from settings, ``manage.py messenger_*`` commands, and
routed messages sent once the database transaction commits.

Add ``"messenger_core.contrib.django"`` to ``INSTALLED_APPS`` and describe the application in
settings, with one of:

``MESSENGER``
    the ``[messenger]`` table as a dict (``{"transports": {...}, "routing": {...}}``);
``MESSENGER_CONFIG``
    the path of a ``messenger.toml`` (or a ``pyproject.toml`` with ``[tool.messenger]``);
``MESSENGER_APP``
    ``module:attribute`` of a ``Messenger`` (or of a function returning one);

plus ``MESSENGER_SCAN``, modules whose ``@handler`` marks are registered (``["shop.handlers"]``),
and ``MESSENGER_ON_COMMIT`` (default ``True``): a message dispatched inside a transaction
(``transaction.atomic()``, ``ATOMIC_REQUESTS``) that would be *sent* to a transport is sent when
the transaction commits, and not at all if it rolls back, so a worker never sees a message
about rows it cannot read yet. Messages handled synchronously are handled at once. A message
sent after the commit is lost if the process dies in between: inside ``with outbox():``
(:mod:`messenger_core.contrib.django.outbox`) a message routed to a SQL transport on the same
database is committed with the data instead.

:func:`get_messenger` gives the application; ``manage.py messenger_consume async``,
``messenger_failed``, ``messenger_setup_transports``, ``messenger_stats``,
``messenger_stop_workers`` and ``messenger_debug`` run the ``messenger`` commands on it
(``manage.py messenger COMMAND ...`` runs any, plugins' included).
"""

from __future__ import annotations

from messenger_core.contrib.django.application import (
    dispatch_on_commit,
    get_messenger,
    reset_messenger,
)
from messenger_core.contrib.django.on_commit import OnCommitMiddleware
from messenger_core.contrib.django.outbox import outbox

__all__ = [
    "OnCommitMiddleware",
    "dispatch_on_commit",
    "get_messenger",
    "outbox",
    "reset_messenger",
]
