"""Finding the application the command line works on.

In order: ``--app module:attribute``, the ``MESSENGER_APP`` environment variable, the ``app``
key of the configuration file; with no application named, the configuration file itself
(``Messenger.from_config``). The configuration file is ``--config PATH``, else
``./messenger.toml`` if it exists, else ``./pyproject.toml`` if it has ``[tool.messenger]``.

The attribute is a :class:`~messenger_core.app.Messenger` or a function taking no argument
that returns one. The current directory is on ``sys.path`` while the command runs (see
``main``), so ``--app shop.messaging:messenger`` finds ``./shop/messaging.py``.

An application named by ``--app``, ``MESSENGER_APP`` or the ``app`` key builds its own
configuration. When the file given with ``--config`` (or the file whose ``app`` key named it)
sets something the loaded application has otherwise, a warning says so (see
:func:`messenger_core.diagnostics.config_mismatch`): the file is not what the command uses.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from messenger_core.app import Messenger
from messenger_core.config import MessengerConfig, load_config, read_config_table, structure_config
from messenger_core.diagnostics import config_mismatch
from messenger_core.errors import ConfigurationError

__all__ = ["APP_VARIABLE", "AppLoader", "AppSource", "find_config_file"]

APP_VARIABLE = "MESSENGER_APP"

logger = logging.getLogger("messenger.cli")


@attrs.frozen
class AppSource:
    """Where the application comes from: ``spec`` (``module:attribute``) or ``config``."""

    origin: str
    """Where it was named, for error messages: ``--app``, ``MESSENGER_APP``, a file."""
    spec: str | None = None
    config: MessengerConfig | None = None
    file: Path | None = None
    """The configuration file given with ``--config`` or holding the ``app`` key, if any."""


def find_config_file(directory: Path) -> Path | None:
    """``messenger.toml`` in ``directory``, else its ``pyproject.toml`` if that has
    ``[tool.messenger]``, else ``None``."""
    own = directory / "messenger.toml"
    if own.is_file():
        return own
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        import tomllib  # noqa: PLC0415 - only when there is a file to look into

        try:
            with pyproject.open("rb") as stream:
                document = tomllib.load(stream)
        except (OSError, tomllib.TOMLDecodeError):
            return None  # not ours to judge: it only matters if it configured messenger
        if isinstance(document.get("tool"), dict) and "messenger" in document["tool"]:
            return pyproject
    return None


class AppLoader:
    """Resolves and loads the application once, on first use."""

    def __init__(
        self,
        *,
        app: str | None = None,
        config: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        directory: Path | None = None,
        messenger: Messenger | None = None,
    ) -> None:
        """``messenger``: the application, already built (a framework integration has it);
        its owner closes it, not :meth:`close`."""
        self.app = app
        self.config = Path(config) if config is not None else None
        self.environ = os.environ if environ is None else environ
        self.directory = directory if directory is not None else Path.cwd()
        self._messenger: Messenger | None = messenger
        self._owned = messenger is None
        self.problems: list[str] = []
        """What was found wrong when the application was loaded (also logged as warnings)."""

    @property
    def loaded(self) -> Messenger | None:
        """The application if it was loaded already."""
        return self._messenger

    def source(self) -> AppSource | None:
        """Where the application comes from, or ``None`` if nothing names one.

        Reads the configuration file if no application is named otherwise; a broken file is a
        :class:`ConfigurationError`.
        """
        if self.app:
            return AppSource("--app", spec=self.app, file=self.config)
        from_environment = self.environ.get(APP_VARIABLE, "").strip()
        if from_environment:
            return AppSource(APP_VARIABLE, spec=from_environment, file=self.config)
        path = self.config or find_config_file(self.directory)
        if path is None:
            return None
        config = load_config(path)
        if config.app:
            return AppSource(f"'app' in {path}", spec=config.app, file=path)
        return AppSource(str(path), config=config)

    def load(self) -> Messenger:
        """The application (loaded the first time); a clear error if none is configured."""
        if self._messenger is None:
            source = self.source()
            if source is None:
                raise ConfigurationError(
                    "no application: pass --app module:attribute, set "
                    f"{APP_VARIABLE}, or create messenger.toml (or [tool.messenger] in "
                    "pyproject.toml) in the current directory"
                )
            self._messenger = _load(source)
            self.problems = self._check_file(source, self._messenger)
            for problem in self.problems:
                logger.warning("%s", problem)
        return self._messenger

    def _check_file(self, source: AppSource, messenger: Messenger) -> list[str]:
        if source.spec is None or source.file is None:
            return []  # built from the file itself, or no file to disagree with
        table = read_config_table(source.file)
        label = f"--config {source.file}" if source.file == self.config else str(source.file)
        config = structure_config(table, source=str(source.file))
        return config_mismatch(messenger, table, config, file=label, app=source.spec)

    def close(self) -> None:
        """Close the application's transports if it was loaded (flushes pending work)."""
        messenger, self._messenger = self._messenger, None
        if messenger is not None and self._owned:
            messenger.close()


def _load(source: AppSource) -> Messenger:
    if source.spec is None:
        assert source.config is not None
        return Messenger(source.config)
    module_name, colon, attribute = source.spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not colon or not module_name or not attribute:
        raise ConfigurationError(
            f"application {source.spec!r} (from {source.origin}) is not like "
            "'package.module:attribute'"
        )
    try:
        module = importlib.import_module(module_name)
    except ConfigurationError:
        raise
    except Exception as error:
        raise ConfigurationError(
            f"cannot import application module {module_name!r} (from {source.origin}): "
            f"{type(error).__name__}: {error}"
        ) from error
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"application {source.spec!r} (from {source.origin}): module {module_name!r} "
                f"has no attribute {attribute!r}"
            ) from None
    if isinstance(target, Messenger):
        return target
    if callable(target):
        try:
            built = target()
        except ConfigurationError:
            raise
        except Exception as error:
            raise ConfigurationError(
                f"application {source.spec!r} (from {source.origin}) failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        if isinstance(built, Messenger):
            return built
        raise ConfigurationError(
            f"application {source.spec!r} (from {source.origin}) returned a "
            f"{type(built).__name__}, not a Messenger"
        )
    raise ConfigurationError(
        f"application {source.spec!r} (from {source.origin}) is a {type(target).__name__}, "
        "not a Messenger (or a function returning one)"
    )
