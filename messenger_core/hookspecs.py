"""The plugin hooks of messenger: the documented API for ``messenger.plugins`` entry points.

A plugin is a module or object with functions decorated by ``messenger_core.hookimpl`` and
named like the specifications below; it is published in the ``messenger.plugins`` entry-point
group (or passed to ``Messenger(plugins=[...])``). All hooks take keyword arguments; a plugin
implements only those it needs, with only the arguments it needs.

Two kinds of hooks:

- registration hooks run once while an application is built (message and stamp types,
  middleware added to every bus, command-line commands);
- worker events run in the worker's loop. They are on the control path, not the dispatch
  path: the bus itself never calls a hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.cli.command import Commands
    from messenger_core.envelope import Envelope
    from messenger_core.message_types import MessageTypeRegistry
    from messenger_core.middleware import Middleware

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "messenger"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- registration ---------------------------------------------------------------------------
@hookspec
def messenger_register_types(registry: MessageTypeRegistry) -> None:
    """Register message classes (and aliases) and stamp classes the plugin brings."""


@hookspec
def messenger_configure(messenger: Messenger) -> None:
    """Called once the application is built: register handlers, routes, factories."""


@hookspec
def messenger_bus_middleware(messenger: Messenger, bus_name: str) -> list[Middleware] | None:
    """Middleware to add to bus ``bus_name``, after the user's middleware and before sending."""


@hookspec
def messenger_add_commands(commands: Commands) -> None:
    """Add commands to the ``messenger`` command line.

    ``commands`` is a :class:`messenger_core.cli.Commands`; call ``commands.add`` once per
    command::

        @hookimpl
        def messenger_add_commands(commands):
            commands.add("http-serve", serve, help="serve the HTTP consume endpoint",
                         configure=add_arguments)

    - ``configure(parser)`` (optional) adds the command's arguments to its
      ``argparse.ArgumentParser`` (sub-commands too, with ``parser.add_subparsers``);
    - ``run(context, args)`` runs it: ``context`` is a :class:`messenger_core.cli.CommandContext`
      (``context.messenger`` loads the application on first use; ``echo``, ``info``, ``ask``,
      ``verbosity``), ``args`` the parsed ``argparse.Namespace``. It returns the exit code
      (``None`` is 0) or raises :class:`messenger_core.cli.CommandError` (exit 1) or
      :class:`messenger_core.cli.UsageError` (exit 2), whose message is printed on one line.

    A name already taken (by a built-in or another plugin) is a ``ConfigurationError``.
    ``-v``, ``-q``, ``--app`` and ``--config`` are global options a command cannot reuse.
    Commands of ``messenger.plugins`` entry points appear in ``messenger --help`` and run
    without loading the application; those of plugins passed to ``Messenger(plugins=[...])``
    are found once the application is loaded, when a command name is not otherwise known.
    """


# -- worker events --------------------------------------------------------------------------
@hookspec
def messenger_worker_started(worker: Any) -> None:
    """A worker starts consuming."""


@hookspec
def messenger_message_received(envelope: Envelope, transport_name: str) -> None:
    """A worker received a message and is about to handle it."""


@hookspec
def messenger_message_handled(envelope: Envelope, transport_name: str) -> None:
    """A worker handled a message (it is acknowledged right after)."""


@hookspec
def messenger_message_failed(
    envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
) -> None:
    """Handling failed; ``will_retry`` says whether it will be retried or parked for good."""


@hookspec
def messenger_message_retried(envelope: Envelope, transport_name: str, retry_count: int) -> None:
    """A failed message was re-sent for retry (``envelope`` is the copy that was sent)."""


@hookspec
def messenger_worker_idle(worker: Any) -> None:
    """A worker found no message on any of its receivers and is about to sleep."""


@hookspec
def messenger_worker_stopped(worker: Any) -> None:
    """A worker stopped."""
