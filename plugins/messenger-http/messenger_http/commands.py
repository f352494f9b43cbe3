"""``messenger serve-http`` and ``messenger consume-http``: the plugin's commands.

This module is the plugin's ``messenger.plugins`` entry point (``http``), which every
application loads: it imports nothing at the top but the hook marker, and the commands' code
only when one of them runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from messenger_core.hookspecs import hookimpl
from messenger_http._names import TOKEN_VARIABLE

if TYPE_CHECKING:
    from messenger_core.cli.command import CommandContext, Commands

__all__ = ["messenger_add_commands"]

SERVE_DESCRIPTION = f"""\
Serve the HTTP consume endpoint of the application with uvicorn: POST /consume
{{"receiver": NAME}} consumes that transport for up to the time limit and answers
{{"handledMessages": n}}; GET /stats counts the messages of every transport; GET /health is
for load balancers; /openapi.json describes the API. Requests carry `Authorization: Bearer
<token>`, the token coming from ${TOKEN_VARIABLE} or `token` under [messenger.plugins.http]
(never from the command line, where other users could read it); without one the command
refuses to start unless --behind-authentication says that a proxy in front authenticates.
SIGTERM or SIGINT finishes the messages being handled, answers their requests, closes the
transports and exits 0; a second signal stops at once."""

CONSUME_DESCRIPTION = f"""\
Call the HTTP consume endpoint at URL (its base URL, or its /consume URL) in a loop, as
Shopware's administration does: again at once after a call that handled messages, after
--idle-pause seconds when it handled nothing, backing off (doubling up to --max-backoff) after
errors. The token comes from ${TOKEN_VARIABLE} or --token-file. Stops on SIGTERM or SIGINT
after the current call (exit 0), on --limit or --time-limit, or when the endpoint refuses the
requests for good (400, 401, 403, 404: exit 1)."""


@hookimpl
def messenger_add_commands(commands: Commands) -> None:
    """Add ``serve-http`` and ``consume-http``."""
    commands.add(
        "serve-http",
        _serve,
        help="serve the HTTP consume endpoint (POST /consume, GET /stats, GET /health)",
        configure=_serve_arguments,
        description=SERVE_DESCRIPTION,
    )
    commands.add(
        "consume-http",
        _consume_http,
        help="consume through an HTTP consume endpoint, in a loop",
        configure=_consume_http_arguments,
        description=CONSUME_DESCRIPTION,
    )


# -- serve-http -------------------------------------------------------------------------------
def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from messenger_core.cli.command import memory_size, positive_float  # noqa: PLC0415

    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to bind (default 8000; 0: any free one)"
    )
    parser.add_argument(
        "--receiver",
        dest="receivers",
        action="append",
        metavar="NAME",
        help="a transport POST /consume may consume (repeat it; default: every transport but "
        "failure transports and sync:// ones)",
    )
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        metavar="S",
        help="seconds one POST /consume consumes for at most (default 2)",
    )
    parser.add_argument(
        "--memory-limit",
        type=memory_size,
        metavar="SIZE",
        help="stop a consume once the process used this much memory (default 512M)",
    )
    parser.add_argument(
        "--keepalive",
        type=positive_float,
        metavar="S",
        help="renew a slow message's reservation every S seconds (transports that can)",
    )
    parser.add_argument(
        "--behind-authentication",
        action="store_true",
        help="serve without a token: a proxy in front authenticates every request",
    )
    parser.add_argument(
        "--root-path", default="", help="the path prefix a proxy serves the endpoint under"
    )


def _serve(context: CommandContext, args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only when serving

    from messenger_core.cli.command import CommandError, UsageError  # noqa: PLC0415
    from messenger_http.app import create_app  # noqa: PLC0415
    from messenger_http.server import HttpServer  # noqa: PLC0415

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number")
    messenger = context.messenger
    app = create_app(
        messenger,
        behind_authentication=args.behind_authentication or None,
        time_limit=args.time_limit,
        memory_limit=args.memory_limit,
        receivers=args.receivers,
        keepalive=args.keepalive,
        close_messenger=True,
    )
    receivers = app.consumer.receivers()
    for name in receivers:
        messenger.get_transport(name)  # an unknown --receiver: a configuration error now
    settings = app.consumer.settings
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        root_path=args.root_path,
        lifespan="on",
        access_log=context.verbose,
        log_level="warning" if context.quiet else "info",
        server_header=False,
    )

    def listening(addresses: list[str]) -> None:
        auth = "bearer token" if settings.token else "no token (--behind-authentication)"
        context.echo(
            f"messenger serve-http: listening on {', '.join(addresses)}; receivers: "
            f"{', '.join(receivers) or 'none'}; time limit {settings.time_limit:g}s; {auth}"
        )

    # One consume logs a start and a stop line: every few seconds while a client polls.
    worker_logger = logging.getLogger("messenger.worker")
    previous = worker_logger.level
    if not context.verbose:
        worker_logger.setLevel(logging.WARNING)
    try:
        HttpServer(config, app, on_listening=listening).run()
    except SystemExit:  # uvicorn's way of saying that it could not start (logged above)
        raise CommandError(f"could not serve on {args.host}:{args.port}") from None
    finally:
        worker_logger.setLevel(previous)
    return 0


# -- consume-http -----------------------------------------------------------------------------
def _consume_http_arguments(parser: argparse.ArgumentParser) -> None:
    from messenger_core.cli.command import (  # noqa: PLC0415
        non_negative_float,
        positive_float,
        positive_int,
    )

    parser.add_argument("url", metavar="URL", help="the endpoint's base URL")
    parser.add_argument("--receiver", required=True, metavar="NAME", help="transport to consume")
    parser.add_argument(
        "--idle-pause",
        type=non_negative_float,
        default=5.0,
        metavar="S",
        help="seconds to wait after a call that handled nothing (default 5)",
    )
    parser.add_argument(
        "--max-backoff",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="longest wait after errors (default 60; the wait doubles from 1 s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="seconds one call may take (default 120: the time limit plus the slowest message)",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="stop after N messages were handled"
    )
    parser.add_argument(
        "--time-limit", type=positive_float, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"read the token here, not ${TOKEN_VARIABLE}",
    )


def _consume_http(context: CommandContext, args: argparse.Namespace) -> int:
    from messenger_core.cli.command import CommandError  # noqa: PLC0415
    from messenger_http.client import ConsumeHttpError, ConsumeLoop  # noqa: PLC0415

    loop = ConsumeLoop(
        args.url,
        args.receiver,
        token=_token(args.token_file),
        idle_pause=args.idle_pause,
        max_backoff=args.max_backoff,
        request_timeout=args.request_timeout,
        limit=args.limit,
        time_limit=args.time_limit,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if loop.stats.stop_reason is not None:
            raise KeyboardInterrupt  # a second signal: at once
        loop.stop(f"{signal.Signals(signum).name} received")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        context.info(f"messenger consume-http: consuming {args.receiver} through {loop.url}")
        stats = loop.run()
    except ConsumeHttpError as error:
        raise CommandError(str(error)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    context.info(
        f"messenger consume-http stopped ({stats.stop_reason}): {stats.handled} handled in "
        f"{stats.requests} requests, {stats.errors} errors"
    )
    return 0


def _token(token_file: Path | None) -> str | None:
    from messenger_core.cli.command import UsageError  # noqa: PLC0415

    if token_file is None:
        return os.environ.get(TOKEN_VARIABLE) or None
    try:
        return token_file.read_text(encoding="utf-8").strip() or None
    except OSError as error:
        raise UsageError(f"cannot read --token-file {token_file}: {error.strerror}") from None
