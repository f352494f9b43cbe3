"""MkDocs hook: fills in the generated parts of the documentation at build time.

A page asks for them with HTML comments, so the Markdown stays readable on its own:

``<!-- messenger:include PATH -->``
    the Markdown file PATH of the repository (a plugin's README, CONTRIBUTING.md), its relative
    links pointed at the page that includes the target, or at the repository on GitHub;
``<!-- messenger:config-reference -->``
    every key of the configuration, from the attrs classes of ``messenger_core.config``;
``<!-- messenger:cli-reference -->``
    the ``--help`` of ``messenger`` and of every built-in command, from its argparse parser.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import itertools
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]

# Repository files that are a page of the site: links to them lead there.
PAGES = {
    "README.md": "index.md",
    "CONTRIBUTING.md": "plugins/writing.md",
    "plugins/messenger-transport-sql/README.md": "transports/sql.md",
    "plugins/messenger-transport-redis/README.md": "transports/redis.md",
    "plugins/messenger-transport-amqp/README.md": "transports/amqp.md",
    "plugins/messenger-serializer-symfony/README.md": "plugins/symfony.md",
    "plugins/messenger-encryption/README.md": "plugins/encryption.md",
    "plugins/messenger-http/README.md": "plugins/http.md",
}

_DIRECTIVE = re.compile(r"<!--\s*messenger:([\w-]+)\s*(\S*)\s*-->")
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the directives of ``page`` by what they ask for."""

    def replace(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "include":
            return _include(argument, page.file.src_uri, config["repo_url"])
        if kind == "config-reference":
            return config_reference()
        if kind == "cli-reference":
            return cli_reference()
        raise ValueError(f"{page.file.src_uri}: unknown directive messenger:{kind}")

    return _DIRECTIVE.sub(replace, markdown)


# -- included files -------------------------------------------------------------------------------
def _include(path: str, page: str, repo_url: str) -> str:
    source = ROOT / path
    blob = f"{repo_url.rstrip('/')}/blob/main/"
    if not source.is_file():
        return (
            f"The documentation of this plugin is its README, [`{path}`]({blob}{path}), "
            "which is not part of this build yet."
        )
    text = source.read_text(encoding="utf-8")
    base = posixpath.dirname(path)

    def relink(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return match.group(0)
        file, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(base, file))
        fragment = f"#{anchor}" if anchor else ""
        if resolved in PAGES:
            relative = posixpath.relpath(PAGES[resolved], posixpath.dirname(page) or ".")
            return f"{match.group(1)}{relative}{fragment}{match.group(3)}"
        return f"{match.group(1)}{blob}{resolved}{fragment}{match.group(3)}"

    return _LINK.sub(relink, text)


# -- the configuration reference ------------------------------------------------------------------
_TABLES = (
    ("MessengerConfig", "[messenger]"),
    ("TransportConfig", "[messenger.transports.NAME]"),
    ("RetryStrategyConfig", "retry_strategy = { ... } of a transport"),
    ("BusConfig", '[messenger.buses."NAME"]'),
    ("MiddlewareConfig", "an entry of a bus's middleware = [...]"),
)


# What a field is for, where config.py has no docstring under it (those take precedence).
_NOTES = {
    "MessengerConfig": {
        "app": "Where the application lives (`module:attribute`, a `Messenger` or a function "
        "returning one): the command line loads it.",
        "default_bus": "The bus of `messenger.bus` and of messages without a `BusNameStamp`.",
        "failure_transport": "The transport that stores messages that failed for good "
        "(a transport may name its own).",
        "serializer": "The serializer of transports that name none (a name of the "
        "`messenger.serializers` entry-point group).",
        "buses": "Buses by name (table below); the default bus exists even if not listed.",
        "transports": "Transports by name (table below); a bare string is a DSN.",
    },
    "TransportConfig": {
        "dsn": "Where the messages go; its scheme picks the transport plugin. Passwords are "
        "masked in logs and errors.",
        "serializer": "This transport's serializer (default: `[messenger] serializer`).",
        "options": "Options of the transport plugin, merged over the DSN's query.",
        "retry_strategy": "How failed messages are retried (table below).",
        "failure_transport": "This transport's own failure transport (default: "
        "`[messenger] failure_transport`).",
    },
    "RetryStrategyConfig": {
        "max_retries": "Retries before the message goes to the failure transport.",
        "delay": "Milliseconds before the first retry.",
        "multiplier": "Each retry waits `multiplier` times longer than the one before.",
        "max_delay": "The longest wait in milliseconds (`0`: no limit).",
        "jitter": "Random spread of each wait, as a fraction (`0.1`: up to 10% either way).",
        "service": "`module:attribute` of a custom retry strategy.",
    },
    "BusConfig": {
        "middleware": "Middleware names (or `{ name, options }` tables) of the "
        "`messenger.middleware` group, run after the built-in steps and before send and "
        "handle.",
        "default_middleware": "`false` leaves only the listed middleware.",
        "allow_no_handlers": "A message with no handler passes silently (event buses).",
    },
    "MiddlewareConfig": {
        "name": "A name of the `messenger.middleware` entry-point group.",
        "options": "Given to the middleware's factory.",
    },
}


def config_reference() -> str:
    """One table per configuration class: key, type, default, what it does."""
    from messenger_core import config as module  # noqa: PLC0415 - the docs build imports it

    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    out = []
    for name, table in _TABLES:
        cls = getattr(module, name)
        node = classes[name]
        out.append(f"### `{table}`\n")
        out.append(f"{_clean(ast.get_docstring(node) or '')}\n")
        out.append(f"Class: [`{name}`][messenger_core.config.{name}].\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        notes = {**_NOTES.get(name, {}), **_field_notes(node)}
        for field in attrs.fields(cls):
            annotation = _annotation(node, field.name)
            out.append(
                f"| `{field.name}` | `{annotation}` | {_default(field)} | "
                f"{_one_line(notes.get(field.name, ''))} |"
            )
        out.append("")
    return "\n".join(out)


def _field_notes(node: ast.ClassDef) -> dict[str, str]:
    """The docstrings written under the fields (``x: int = 0`` then ``\"\"\"...\"\"\"``)."""
    notes = {}
    body = node.body
    for current, following in itertools.pairwise(body):
        if (
            isinstance(current, ast.AnnAssign)
            and isinstance(current.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            notes[current.target.id] = following.value.value
    return notes


def _annotation(node: ast.ClassDef, name: str) -> str:
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and getattr(item.target, "id", None) == name:
            return ast.unparse(item.annotation)
    return "?"


def _default(field: Any) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        made = default.factory()
        return f"`{made!r}`" if not attrs.has(type(made)) else f"`{type(made).__name__}()`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default is None:
        return "none"
    return f"`{default!r}`"


def _clean(text: str) -> str:
    # Sphinx roles read as code in Markdown.
    return re.sub(r":(?:class|func|meth|attr|mod):`~?([^`]+)`", r"`\1`", text).replace("``", "`")


def _one_line(text: str) -> str:
    return " ".join(_clean(text).split()).replace("|", "\\|")


# -- the command-line reference -------------------------------------------------------------------
def cli_reference() -> str:
    """``messenger --help`` and each built-in command's ``--help``, 100 columns wide."""
    from messenger_core import cli  # noqa: PLC0415 - the docs build imports it

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        commands = cli.builtin_commands()
        out = ["## `messenger`\n", "```text", _help(cli._parser(commands, None)), "```\n"]
        for name in commands.names():
            parser = cli._parser(cli.builtin_commands(), name)
            sub = next(
                action
                for action in parser._actions
                if isinstance(action, argparse._SubParsersAction)
            )
            out += [f"## `messenger {name}`\n", "```text", _help(sub.choices[name]), "```\n"]
        return "\n".join(out)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def _help(parser: argparse.ArgumentParser) -> str:
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        parser.print_help()
    return stream.getvalue().rstrip()
