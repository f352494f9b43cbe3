"""The application of a Django project, built once from its settings."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db import transaction

from messenger_core.app import Messenger
from messenger_core.contrib._building import build_messenger
from messenger_core.envelope import Envelope
from messenger_core.hookspecs import hookimpl
from messenger_core.middleware import Middleware
from messenger_core.stamps import Stamp

__all__ = ["dispatch_on_commit", "get_messenger", "reset_messenger"]

_lock = threading.Lock()
_messenger: Messenger | None = None


class _OnCommitPlugin:
    """Adds :class:`OnCommitMiddleware` to every bus of the application."""

    def __init__(self, using: str | None) -> None:
        self.using = using

    @hookimpl
    def messenger_bus_middleware(self, messenger: Messenger, bus_name: str) -> list[Middleware]:
        from messenger_core.contrib.django.on_commit import OnCommitMiddleware  # noqa: PLC0415

        return [OnCommitMiddleware(messenger.router, self.using)]


def get_messenger() -> Messenger:
    """The project's application, built from settings the first time (see the package)."""
    global _messenger  # noqa: PLW0603 - one application per process, as settings are
    if _messenger is None:
        with _lock:
            if _messenger is None:
                _messenger = _build()
    return _messenger


def reset_messenger() -> None:
    """Close the application and forget it: the next :func:`get_messenger` builds it again
    (after settings changed, in tests)."""
    global _messenger
    with _lock:
        messenger, _messenger = _messenger, None
    if messenger is not None:
        messenger.close()


def dispatch_on_commit(message: Any, *stamps: Stamp, using: str | None = None) -> None:
    """Dispatch ``message`` on the default bus once the transaction of ``using`` commits (at
    once outside a transaction), whatever ``MESSENGER_ON_COMMIT`` says."""
    messenger = get_messenger()
    envelope = message if isinstance(message, Envelope) else Envelope(message)
    transaction.on_commit(lambda: messenger.bus.dispatch(envelope, *stamps), using=using)


def _build() -> Messenger:
    messenger = build_messenger(
        where="Django settings MESSENGER*",
        config=getattr(settings, "MESSENGER", None),
        config_file=getattr(settings, "MESSENGER_CONFIG", None),
        app=getattr(settings, "MESSENGER_APP", None),
        scan=getattr(settings, "MESSENGER_SCAN", ()),
    )
    if getattr(settings, "MESSENGER_ON_COMMIT", True):
        messenger.hooks.register(_OnCommitPlugin(getattr(settings, "MESSENGER_DATABASE", None)))
    return messenger
