"""The plugin hooks of messenger: the documented API for ``messenger.plugins`` entry points.

A plugin is a module or object with functions decorated by ``messenger_core.hookimpl`` and
named like the specifications below; it is published in the ``messenger.plugins`` entry-point
group (or passed to ``Messenger(plugins=[...])``, or added with ``messenger.hooks.register``).

How hooks are called:

- Every hook is called with keyword arguments. An implementation takes only the arguments it
  needs, by their names here (pluggy matches them by name); one that names an argument no
  specification has is refused when the plugin is registered.
- A hook implementation named like no specification below (say ``messenger_worker_startd``) is
  a :class:`~messenger_core.errors.ConfigurationError` naming the plugin and the hook, once the
  plugins are loaded. One meant for another version of messenger may say so with
  ``@hookimpl(optionalhook=True)``.
- Every implementation is called, in pluggy's order (the last registered first;
  ``tryfirst``/``trylast`` change it), except for :func:`messenger_transport_serializer`,
  which stops at the first that returns a serializer. Only it and
  :func:`messenger_bus_middleware` return something; the others' return values are ignored.
- An exception raised by an implementation is not caught by pluggy: where it goes is said
  under each hook.

Two kinds of hooks:

- registration hooks run once while an application is built (message and stamp types,
  middleware added to every bus, command-line commands);
- worker events run in the worker's loop (:class:`messenger_core.worker.Worker`). They are on
  the control path, not the dispatch path: the bus itself never calls a hook. A worker event
  no plugin implements costs nothing per message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from messenger_core.app import Messenger
    from messenger_core.cli.command import Commands
    from messenger_core.envelope import Envelope
    from messenger_core.message_types import MessageTypeRegistry
    from messenger_core.middleware import Middleware
    from messenger_core.serializer import Serializer
    from messenger_core.worker import Worker

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "messenger"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks the specifications below (plugins do not use it)."""
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's implementation of a hook; also ``messenger_core.hookimpl``."""


# -- registration ---------------------------------------------------------------------------
@hookspec
def messenger_register_types(registry: MessageTypeRegistry) -> None:
    """Register the message classes (and their aliases) and stamp classes the plugin brings.

    Called once per application, while :class:`~messenger_core.app.Messenger` is built, after
    the classes named in ``routing`` and before :func:`messenger_configure`. Registering makes
    a class known by its wire name, so that a serializer can decode it from a transport.

    :param registry: the application's
        :class:`~messenger_core.message_types.MessageTypeRegistry`: ``registry.register(cls,
        name, *aliases)`` for a message class, ``registry.register_stamp(cls, name,
        *aliases)`` for a stamp class. A name already taken by another class raises
        ``ConfigurationError``, which ends building the application.
    :return: nothing (ignored).
    """


@hookspec
def messenger_configure(messenger: Messenger) -> None:
    """Configure the application the plugin is loaded into: handlers, routes, factories.

    Called once per application, at the end of building it, after
    :func:`messenger_register_types`; buses and transports are not built yet (they are on
    first use), so a plugin may still add handlers (``messenger.handler``), routes
    (``messenger.route``) and transport, serializer or middleware factories (to the
    application's factory registry). An exception ends building the application.

    :param messenger: the :class:`~messenger_core.app.Messenger` being built.
    :return: nothing (ignored).
    """


@hookspec
def messenger_bus_middleware(messenger: Messenger, bus_name: str) -> list[Middleware] | None:
    """Middleware to add to a bus, after the user's middleware and before sending.

    Called once per bus, when the bus is first used (its middleware chain is built then), and
    only for buses with ``default_middleware`` (the default). The middleware of every plugin
    are added in the order pluggy calls the implementations. An exception ends building the
    bus (the dispatch that asked for it raises it).

    :param messenger: the application the bus belongs to.
    :param bus_name: the name of the bus being built, as configured under ``buses`` (the
        default bus too).
    :return: a list of :class:`~messenger_core.middleware.Middleware` to add, or ``None`` (or
        an empty list) to add none to this bus. Not ``firstresult``: every plugin's list is
        added.
    """


@hookspec(firstresult=True)
def messenger_transport_serializer(
    messenger: Messenger, transport_name: str, serializer: Serializer
) -> Serializer | None:
    """Replace the serializer of a transport, typically by one that wraps it.

    Called once per transport, when the transport is built (on first use), with the
    serializer its configuration names; the transport is built with what the hook returns.
    A plugin that must see every message leaving the process (the encryption plugin encrypts
    the messages of some buses, whatever transport they go to) wraps the serializer here.
    ``firstresult``: the first implementation that returns a serializer wins; the others are
    not called. An exception ends building the transport.

    :param messenger: the application the transport belongs to (its configuration:
        ``messenger.config``, plugin options under ``messenger.config.plugins``).
    :param transport_name: the transport's name, as configured under ``transports``.
    :param serializer: the serializer the transport would otherwise use.
    :return: the serializer to use instead, or ``None`` to keep ``serializer``.
    """


@hookspec
def messenger_add_commands(commands: Commands) -> None:
    """Add commands to the ``messenger`` command line.

    Called by the ``messenger`` command line before it parses its arguments (for the
    application's own plugins, only once a command name is not otherwise known; see below).
    An exception from an entry-point plugin leaves out the plugins' commands (the built-ins
    still work, a warning says why); from an application's plugin it ends the command.

    :param commands: a :class:`messenger_core.cli.Commands`; call ``commands.add`` once per
        command.
    :return: nothing (ignored).

    Adding a command::

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
def messenger_worker_started(worker: Worker) -> None:
    """A worker starts consuming.

    Called at the start of every :meth:`Worker.run <messenger_core.worker.Worker.run>`, before
    its first receive, with ``worker.stats`` fresh. An exception ends ``run()`` before anything
    was received (and :func:`messenger_worker_stopped` is not called).

    :param worker: the :class:`~messenger_core.worker.Worker`: ``worker.transport_names``
        (in priority order), ``worker.stats``, ``worker.stop(reason)`` to stop it after the
        current message.
    :return: nothing (ignored).
    """


@hookspec
def messenger_message_received(envelope: Envelope, transport_name: str) -> None:
    """A worker received a message and is about to handle it.

    Called for every message a worker received, before it is dispatched (an undecodable one
    too, before it is parked). An exception leaves the message unsettled (it comes back when
    its reservation expires) and pauses the receiver, as a transport failure would.

    :param envelope: the message as received, with its ``ReceivedStamp`` and
        ``ConsumedByWorkerStamp`` (and the transport's ``TransportMessageIdStamp``, where it
        gives one). Its ``message`` is an
        :class:`~messenger_core.transport.UndecodableMessage` if it could not be decoded.
    :param transport_name: the name of the transport it was received from.
    :return: nothing (ignored).
    """


@hookspec
def messenger_message_handled(envelope: Envelope, transport_name: str) -> None:
    """A worker handled a message and acknowledged it.

    Called after every handler of the message succeeded and the receiver's ``ack`` returned.
    An exception pauses the receiver, as a transport failure would (the message stays
    handled).

    :param envelope: the message as the bus returned it, with a ``HandledStamp`` per handler
        (and its result).
    :param transport_name: the name of the transport it was received from.
    :return: nothing (ignored).
    """


@hookspec
def messenger_message_failed(
    envelope: Envelope, transport_name: str, error: BaseException, will_retry: bool
) -> None:
    """Handling a message failed; it is about to be retried or parked.

    Called once per failed attempt, before the retry copy or the failure copy is sent. An
    exception leaves the message unsettled (it comes back later) and pauses the receiver, as a
    transport failure would.

    :param envelope: the message whose handling failed, with a ``HandledStamp`` for each of
        its handlers that did succeed (a retry skips them).
    :param transport_name: the name of the transport it was received from.
    :param error: what was raised: a :class:`~messenger_core.errors.HandlerFailedError`
        holding each failing handler's exception, a
        :class:`~messenger_core.errors.MessageDecodingError` for a message that could not be
        decoded, or what a middleware raised.
    :param will_retry: ``True`` if a copy is re-sent for a retry (then
        :func:`messenger_message_retried` follows), ``False`` if the message is parked in the
        failure transport, or rejected when there is none.
    :return: nothing (ignored).
    """


@hookspec
def messenger_message_retried(envelope: Envelope, transport_name: str, retry_count: int) -> None:
    """A failed message was re-sent to its transport for a retry.

    Called after the retry copy was sent and the original rejected. An exception pauses the
    receiver, as a transport failure would (the retry stands).

    :param envelope: the copy that was sent, with its ``DelayStamp``, its newest
        ``RedeliveryStamp`` and an ``ErrorDetailsStamp`` of the error.
    :param transport_name: the name of the transport it was received from and sent back to.
    :param retry_count: which retry the copy is: 1 for the first.
    :return: nothing (ignored).
    """


@hookspec
def messenger_worker_idle(worker: Worker) -> None:
    """A worker found no message on any of its receivers.

    Called after every round over the receivers that received nothing (every receiver was
    empty or paused), before the worker checks its limits and sleeps (it does not sleep while
    every receiver waits for messages itself). An exception ends ``run()`` (after
    :func:`messenger_worker_stopped`).

    :param worker: the :class:`~messenger_core.worker.Worker`; ``worker.stop(reason)``
        stops it before it sleeps.
    :return: nothing (ignored).
    """


@hookspec
def messenger_worker_stopped(worker: Worker) -> None:
    """A worker stopped.

    Called once at the end of every ``run()`` that :func:`messenger_worker_started` began,
    however it ended (a limit, ``stop()``, a signal, an error), after the receivers wrote
    their pending acknowledgements. An exception ends ``run()`` with it.

    :param worker: the :class:`~messenger_core.worker.Worker`; ``worker.stats`` holds its
        final counts and ``worker.stats.stop_reason`` why it stopped.
    :return: nothing (ignored).
    """
