"""Commands of the ``messenger`` command line, and what a plugin needs to add its own.

Every command, built-in or from a plugin, is a :class:`Command` in a :class:`Commands`
registry: a name, a one-line help, a function that adds its arguments to an ``argparse``
parser, and a function that runs it with a :class:`CommandContext` and the parsed arguments.
Plugins add theirs from the ``messenger_add_commands(commands)`` hook::

    from messenger_core import hookimpl

    @hookimpl
    def messenger_add_commands(commands):
        commands.add("greet", run=greet, help="say hello", configure=add_arguments)

    def add_arguments(parser):
        parser.add_argument("name")

    def greet(context, args):
        context.echo(f"hello {args.name}, from {context.messenger!r}")
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterator
from typing import TextIO

import attrs

from messenger_core.app import Messenger
from messenger_core.cli.app_loader import AppLoader
from messenger_core.cli.output import ask, is_terminal
from messenger_core.errors import ConfigurationError
from messenger_core.worker import parse_memory_limit

__all__ = [
    "Command",
    "CommandContext",
    "CommandError",
    "Commands",
    "ConfigureFunction",
    "RunFunction",
    "UsageError",
    "memory_size",
    "non_negative_float",
    "positive_float",
    "positive_int",
]


class CommandError(Exception):
    """A command could not do its job: ``messenger`` prints the message on one line and exits
    with ``exit_code`` (1 unless given)."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CommandError):
    """The command line itself is wrong (exit code 2); ``prog`` names the (sub)command."""

    exit_code = 2

    def __init__(self, message: str, *, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


RunFunction = Callable[["CommandContext", argparse.Namespace], "int | None"]
"""Runs a command; returns its exit code (``None`` means 0)."""
ConfigureFunction = Callable[[argparse.ArgumentParser], None]
"""Adds a command's arguments (and sub-commands) to its parser."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*$")


@attrs.frozen
class Command:
    """One command: ``messenger NAME ...``."""

    name: str
    help: str
    """One line, shown in ``messenger --help``."""
    run: RunFunction
    configure: ConfigureFunction | None = None
    description: str | None = None
    """Shown in ``messenger NAME --help`` (default: ``help``)."""


class Commands:
    """The commands ``messenger`` knows, by name (what ``messenger_add_commands`` receives)."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        run: RunFunction,
        *,
        help: str,
        configure: ConfigureFunction | None = None,
        description: str | None = None,
    ) -> Command:
        """Add command ``name``; a name already taken is a :class:`ConfigurationError`.

        ``configure(parser)`` adds the command's arguments; ``run(context, args)`` runs it and
        returns its exit code (``None``: 0) or raises :class:`CommandError` /
        :class:`UsageError` with a one-line message.
        """
        if not _NAME.match(name):
            raise ConfigurationError(
                f"command name {name!r} must start with a letter and hold only letters, "
                "digits, '-', '_', '.' and ':'"
            )
        if name in self._commands:
            raise ConfigurationError(f"command {name!r} is defined twice")
        command = Command(
            name=name, help=help, run=run, configure=configure, description=description
        )
        self._commands[name] = command
        return command

    def __getitem__(self, name: str) -> Command:
        return self._commands[name]

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)

    def names(self) -> list[str]:
        """The command names, in the order they were added."""
        return list(self._commands)


class CommandContext:
    """What a running command works with: the application (loaded on first use), the
    output streams and the verbosity (``-1`` with ``-q``, else the number of ``-v``)."""

    def __init__(
        self,
        loader: AppLoader,
        *,
        stdout: TextIO,
        stderr: TextIO,
        stdin: TextIO,
        verbosity: int = 0,
    ) -> None:
        self.loader = loader
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.verbosity = verbosity
        self.argv: tuple[str, ...] = ()
        """The command line this command runs with (a supervisor starts its children so)."""

    @property
    def messenger(self) -> Messenger:
        """The application; a :class:`ConfigurationError` if none is configured."""
        return self.loader.load()

    def optional_messenger(self) -> Messenger | None:
        """The application, or ``None`` when nothing names one (a broken one is an error)."""
        if self.loader.loaded is None and self.loader.source() is None:
            return None
        return self.loader.load()

    @property
    def verbose(self) -> bool:
        """``-v`` was given."""
        return self.verbosity > 0

    @property
    def quiet(self) -> bool:
        """``-q`` was given."""
        return self.verbosity < 0

    def echo(self, text: str = "") -> None:
        """Print ``text`` on standard output."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def info(self, text: str) -> None:
        """Print ``text`` on standard output unless ``-q`` was given."""
        if not self.quiet:
            self.echo(text)

    @property
    def interactive(self) -> bool:
        """Whether questions can be asked (standard input is a terminal)."""
        return is_terminal(self.stdin)

    def ask(self, question: str, answers: dict[str, str]) -> str:
        """Ask ``question`` on the terminal; see :func:`~messenger_core.cli.output.ask`."""
        return ask(self.stdin, self.stdout, question, answers)


# -- argument types -----------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """An argument type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def positive_float(text: str) -> float:
    """An argument type: a number of seconds above zero."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def non_negative_float(text: str) -> float:
    """An argument type: a number of seconds, zero or more."""
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def memory_size(text: str) -> int:
    """An argument type: ``128M``, ``1G``, ``512K`` or a number of bytes."""
    try:
        value = parse_memory_limit(text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
