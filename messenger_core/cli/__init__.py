"""The ``messenger`` command line (``python -m messenger_core`` runs it too).

``main(argv)`` parses the arguments, finds the application (see
:mod:`messenger_core.cli.app_loader`), runs the command and returns the exit code:

- 0: done (for ``consume``: the worker stopped gracefully);
- 1: the command ran but something failed (a message not found or failing again, a
  transport error, an unexpected error);
- 2: the command line or the configuration is wrong (one line on stderr; ``-v`` adds the
  traceback);
- 130: interrupted.

Commands are :class:`Command` objects in a :class:`Commands` registry; plugins add theirs
through the ``messenger_add_commands(commands)`` hook (see :mod:`messenger_core.cli.command`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from messenger_core._suggest import close_matches
from messenger_core._version import core_version
from messenger_core.app import Messenger
from messenger_core.cli.app_loader import APP_VARIABLE, AppLoader
from messenger_core.cli.command import (
    Command,
    CommandContext,
    CommandError,
    Commands,
    ConfigureFunction,
    RunFunction,
    UsageError,
)
from messenger_core.cli.output import LogHandler, is_terminal, one_line
from messenger_core.dsn import mask_dsn
from messenger_core.errors import ConfigurationError
from messenger_core.hooks import Hooks
from messenger_core.logging_json import FORMATS, ContextFilter, JsonFormatter
from messenger_core.plugins import autoload_enabled, disabled_plugins

__all__ = [
    "Command",
    "CommandContext",
    "CommandError",
    "Commands",
    "ConfigureFunction",
    "RunFunction",
    "UsageError",
    "builtin_commands",
    "main",
]

PROG = "messenger"

BUILTINS: tuple[tuple[str, str, str], ...] = (
    ("consume", "consume", "consume messages from transports"),
    ("failed", "failed", "show, retry or remove messages in a failure transport"),
    (
        "setup-transports",
        "setup_transports",
        "create the transports' storage (tables, streams, exchanges...)",
    ),
    ("stats", "stats", "count the messages waiting in transports"),
    ("debug", "debug", "list the handlers of each message type per bus, and the routing"),
    ("stop-workers", "stop_workers", "stop running workers after their current message"),
    ("plugins", "plugins", "list the installed plugins (entry points) and check them"),
)
"""The built-in commands: name, module under ``messenger_core.cli`` (whose ``register``
adds it) and the one-line help. A module is imported only when its command runs or shows its
own help, so ``messenger consume`` does not load the code of ``failed`` and the others."""

DESCRIPTION = """\
Work with a messenger application: consume messages, inspect and retry failed ones, set up
and count transports, list handlers and plugins."""

EPILOG = f"""\
The application is found from --app module:attribute, else ${APP_VARIABLE}, else the `app`
key of the configuration file; with no application named, the configuration file alone
(Messenger.from_config). The configuration file is --config PATH, else ./messenger.toml,
else ./pyproject.toml if it has [tool.messenger]. The current directory is importable.

Exit codes: 0 done, 1 something failed, 2 wrong usage or configuration (-v shows the
traceback), 130 interrupted. `{PROG} COMMAND --help` describes each command."""

logger = logging.getLogger("messenger.cli")

LOG_FORMAT_VARIABLE = "MESSENGER_LOG_FORMAT"


def builtin_commands() -> Commands:
    """A registry holding the built-in commands only (their modules are not imported yet)."""
    commands = Commands()
    for name, module, help in BUILTINS:
        _add_lazily(commands, name, f"{__name__}.{module}", help)
    return commands


def _add_lazily(commands: Commands, name: str, module: str, help: str) -> None:
    def command() -> Command:
        registered = Commands()
        importlib.import_module(module).register(registered)
        return registered[name]

    def configure(parser: argparse.ArgumentParser) -> None:
        real = command()
        parser.description = real.description or real.help
        if real.configure is not None:
            real.configure(parser)

    def run(context: CommandContext, args: argparse.Namespace) -> int | None:
        return command().run(context, args)

    commands.add(name, run, help=help, configure=configure)


def main(argv: Sequence[str] | None = None, *, application: Messenger | None = None) -> int:
    """Run ``messenger`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    ``application``: the application to work on, already built (the Django and Flask
    integrations pass theirs). Its owner closes it; an application the command loads itself
    is closed when the command ends.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr, stdin = sys.stdout, sys.stderr, sys.stdin
    verbosity = 0
    try:
        options, rest = _parse_global_options(arguments)
        verbosity = -1 if options.quiet else options.verbose
        if options.version:
            stdout.write(f"{PROG} {core_version()}\n")
            return 0
        with _logging(stderr, verbosity, options.log_format), _importable(Path.cwd()):
            loader = AppLoader(app=options.app, config=options.config, messenger=application)
            context = CommandContext(
                loader, stdout=stdout, stderr=stderr, stdin=stdin, verbosity=verbosity
            )
            context.argv = tuple(arguments)
            try:
                code = _run(context, rest)
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    loader.close()
                raise
            loader.close()  # may flush pending work: its failure is the command's failure
            return code
    except SystemExit as stop:  # --help, or a command that exits itself
        if isinstance(stop.code, int) or stop.code is None:
            return stop.code or 0
        stderr.write(f"{stop.code}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("\ninterrupted\n")
        return 130
    except UsageError as error:
        prog = error.prog or PROG
        hint = f" (see: {prog} --help)"
        return _report(stderr, error, verbosity, 2, prefix=f"{prog}: error: ", hint=hint)
    except CommandError as error:
        return _report(stderr, error, verbosity, error.exit_code)
    except ConfigurationError as error:
        return _report(stderr, error, verbosity, 2)
    except Exception as error:
        return _report(stderr, error, verbosity, 1, name_type=True)


def _run(context: CommandContext, arguments: list[str]) -> int:
    word = next((a for a in arguments if not a.startswith("-")), None)
    commands = _commands(context, word)
    if word is not None and word not in commands:
        raise UsageError(_unknown_command(word, commands))
    parser = _parser(commands, word)
    if not arguments:
        raise UsageError(f"name a command: {', '.join(commands.names())}")
    args = parser.parse_args(arguments)
    command = commands[args.command]
    try:
        code = command.run(context, args)
    except UsageError as error:
        if error.prog is None:
            error.prog = f"{PROG} {command.name}"
        raise
    return 0 if code is None else int(code)


# -- commands and the parser --------------------------------------------------------------------
def _commands(context: CommandContext, word: str | None) -> Commands:
    """Built-ins, plus the commands of entry-point plugins; for a name none of them knows, the
    application is loaded and its plugins are asked too (``Messenger(plugins=[...])``)."""
    commands = builtin_commands()
    try:
        hooks = Hooks(autoload=autoload_enabled(), disabled=disabled_plugins())
        hooks.add_commands(commands)
    except Exception as error:
        # A broken plugin must not take the built-ins (`messenger plugins` above all) with it.
        logger.warning("plugin commands are not available: %s: %s", type(error).__name__, error)
        commands = builtin_commands()
    if word is None or word in commands:
        return commands
    try:
        messenger = context.optional_messenger()
    except Exception as error:
        raise UsageError(
            f"{_unknown_command(word, commands)} (the application could not be loaded to look "
            f"for plugin commands: {one_line(str(error))})"
        ) from error
    if messenger is None:
        return commands
    with_app = builtin_commands()
    messenger.hooks.add_commands(with_app)
    return with_app


def _unknown_command(word: str, commands: Commands) -> str:
    close = close_matches(word, commands.names())
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown command {word!r}{hint} (commands: {', '.join(commands.names())})"


class _Parser(argparse.ArgumentParser):
    """Reports a mistake as one line (a :class:`UsageError`) instead of usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, prog=self.prog)


def _global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file (default: ./messenger.toml, else ./pyproject.toml with "
        "[tool.messenger])",
    )
    group.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        default=default,
        help=f"the application: a Messenger or a function returning one (or ${APP_VARIABLE})",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default if default is not None else 0,
        help="more output: -v one log line per message and tracebacks, -vv debug logs",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if default is not None else False,
        help="only warnings, errors and the requested data",
    )
    group.add_argument(
        "--log-format",
        choices=FORMATS,
        default=default if default is not None else _default_log_format(),
        help="log lines as text, or one JSON object per line with the message id, type and "
        "transport (default: $MESSENGER_LOG_FORMAT, else text)",
    )
    group.add_argument(
        "--version",
        action="store_true",
        default=default if default is not None else False,
        help=f"print the version of {PROG} (messenger-core) and exit",
    )


def _parse_global_options(arguments: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The global options, wherever they are on the line, and everything else in order."""
    parser = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    _global_options(parser)
    return parser.parse_known_args(arguments)


def _parser(commands: Commands, word: str | None) -> argparse.ArgumentParser:
    """The parser of the command line; only command ``word``'s own arguments are added (the
    others only need their name and help)."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in commands:
        command_parser = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        # Accepted after the command too (`consume async -v`); their values come from
        # _parse_global_options, so here they must not overwrite anything.
        _global_options(command_parser, default=argparse.SUPPRESS)
        if command.configure is not None and command.name == word:
            command.configure(command_parser)
    return parser


# -- errors, logging, sys.path ------------------------------------------------------------------
def _report(
    stderr: TextIO,
    error: BaseException,
    verbosity: int,
    code: int,
    *,
    prefix: str = f"{PROG}: error: ",
    hint: str = "",
    name_type: bool = False,
) -> int:
    if verbosity > 0:
        stderr.write(mask_dsn("".join(traceback.format_exception(error))))
    text = one_line(str(error)) or type(error).__name__
    if name_type:
        text = f"{type(error).__name__}: {text}"
        if verbosity <= 0:
            hint = " (-v shows the traceback)"
    stderr.write(mask_dsn(prefix + text + hint) + "\n")
    stderr.flush()
    return code


def _default_log_format() -> str:
    value = os.environ.get(LOG_FORMAT_VARIABLE, "").strip().lower() or "text"
    if value not in FORMATS:
        raise UsageError(f"{LOG_FORMAT_VARIABLE} must be text or json, not {value!r}")
    return value


@contextlib.contextmanager
def _logging(stderr: TextIO, verbosity: int, log_format: str = "text") -> Iterator[None]:
    """Log lines of the ``messenger`` loggers on stderr while the command runs."""
    root = logging.getLogger("messenger")
    handler = LogHandler(stderr, terminal=is_terminal(stderr) and log_format == "text")
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ContextFilter())
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1 else logging.INFO
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@contextlib.contextmanager
def _importable(directory: Path) -> Iterator[None]:
    """``directory`` first on ``sys.path`` (``--app shop.app:messenger`` finds ./shop)."""
    entry = str(directory)
    added = entry not in sys.path and os.path.realpath(entry) not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
