"""``messenger stop-workers``: ask every running worker to stop after its current message."""

from __future__ import annotations

import argparse

from messenger_core.app import Messenger
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.stop_signal import FileStopSignal, StopSignal

__all__ = ["describe_stop_signal", "register", "stop_signal_of"]

DESCRIPTION = """\
Ask every worker started before now to stop once its current message is handled. Workers
look at the signal after every message and when idle.

The signal is the application's `stop_signal` attribute if it has one (a store shared by
several hosts), else a file in the system's temporary directory (every worker on this host)."""


def register(commands: Commands) -> None:
    """Add ``stop-workers``."""
    commands.add(
        "stop-workers",
        run,
        help="stop running workers after their current message",
        description=DESCRIPTION,
    )


def stop_signal_of(messenger: Messenger | None) -> StopSignal:
    """The application's stop signal, else the default :class:`FileStopSignal`."""
    return messenger.stop_signal if messenger is not None else FileStopSignal()


def describe_stop_signal(signal: StopSignal) -> str:
    """A few words on where the signal is kept."""
    if isinstance(signal, FileStopSignal):
        return f"stop file {signal.path}"
    return repr(signal)  # the store's reprs show where it is, password masked


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Request the stop."""
    signal = stop_signal_of(context.optional_messenger())
    signal.request()
    context.info(
        "Asked every worker started before now to stop after its current message "
        f"({describe_stop_signal(signal)})."
    )
    return 0
