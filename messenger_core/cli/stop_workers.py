"""``messenger stop-workers``: ask every running worker to stop after its current message."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from messenger_core.app import Messenger
from messenger_core.cli.command import CommandContext, Commands
from messenger_core.stop_signal import (
    DEFAULT_FILE_NAME,
    STOP_SIGNAL_FILE_VARIABLE,
    FileStopSignal,
    StopSignal,
    default_stop_file,
)

__all__ = ["describe_stop_signal", "register", "stop_signal_of"]

DESCRIPTION = """\
Ask every worker started before now to stop once its current message is handled. Workers
look at the signal after every message and when idle.

The signal is the application's `stop_signal` attribute if it has one, else the
`stop_signal` configuration key (a file, or a store shared by several hosts), else the file
named by $MESSENGER_STOP_SIGNAL_FILE, else the application's own file in the system's
temporary directory: messenger-stop-workers-<key>, where <key> hashes the configuration's
`app` and its transports' names and DSNs. Two deployments of one application on a host share
that file; another application (other `app` or other transports) has its own."""


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
    """A few words on where the signal is kept, and whose workers watch it."""
    if not isinstance(signal, FileStopSignal):
        return repr(signal)  # the store's reprs show where it is, password masked
    if os.environ.get(STOP_SIGNAL_FILE_VARIABLE) and signal.path == default_stop_file():
        return f"stop file {signal.path}, from ${STOP_SIGNAL_FILE_VARIABLE}"
    temporary = Path(tempfile.gettempdir())
    if signal.path.parent == temporary and signal.path.name.startswith(f"{DEFAULT_FILE_NAME}-"):
        return (
            f"stop file {signal.path}: this application's, shared by the workers whose "
            "configuration names the same `app` and transports"
        )
    if signal.path == temporary / DEFAULT_FILE_NAME:
        return (
            f"stop file {signal.path}; no application was found here, and the workers of an "
            "application watch their own file: run this command with the application's "
            "--config or --app"
        )
    return f"stop file {signal.path}"


def run(context: CommandContext, args: argparse.Namespace) -> int:
    """Request the stop."""
    signal = stop_signal_of(context.optional_messenger())
    signal.request()
    context.info(
        "Asked every worker started before now to stop after its current message "
        f"({describe_stop_signal(signal)})."
    )
    return 0
