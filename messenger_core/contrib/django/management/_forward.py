"""Management commands that run a ``messenger`` command on the project's application."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

__all__ = ["MessengerCommand"]


class MessengerCommand(BaseCommand):
    """Runs ``messenger <command> ARGS...``; :attr:`command` is empty for ``manage.py messenger``
    (the first argument names the command then).

    The arguments are those of the ``messenger`` command line (``manage.py messenger_consume
    async --limit 10 -v``), passed untouched: Django's own options (``--settings``,
    ``--verbosity``) do not apply.
    """

    command = ""

    def run_from_argv(self, argv: list[str]) -> None:
        """From ``manage.py``: hand every argument to ``messenger``."""
        self._run(argv[2:])

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """For ``call_command(name, *args)``: every argument, untouched."""
        parser.add_argument("arguments", nargs=argparse.REMAINDER)

    def handle(self, *args: Any, **options: Any) -> None:
        """From ``call_command``."""
        self._run([*args, *options.get("arguments", [])])

    def _run(self, arguments: list[str]) -> None:
        from messenger_core.cli import main  # noqa: PLC0415 - only when the command runs
        from messenger_core.contrib.django import get_messenger  # noqa: PLC0415

        words = [self.command, *arguments] if self.command else arguments
        code = main(words, application=get_messenger())
        if code:
            raise CommandError(f"messenger {' '.join(words)} exited with {code}", returncode=code)
