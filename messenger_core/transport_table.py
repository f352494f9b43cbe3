"""An application's transports by name: built from the configuration on first use, added
ready-made, or swapped (the testing kit puts in-memory ones in their place)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from messenger_core.config import TransportConfig
from messenger_core.errors import ConfigurationError
from messenger_core.transport import Transport

__all__ = ["TransportTable"]


class TransportTable:
    """The transports of one application.

    :param configured: the configuration's transports, by name.
    :param create: builds the transport of a name and its configuration (connected on first
        use).
    """

    def __init__(
        self,
        configured: Mapping[str, TransportConfig],
        create: Callable[[str, TransportConfig], Transport],
    ) -> None:
        self._configured = configured
        self._create = create
        self._built: dict[str, Transport] = {}
        self._lock = threading.RLock()

    @property
    def names(self) -> list[str]:
        """Every configured or added transport name, configured ones first."""
        return list(dict.fromkeys([*self._configured, *self._built]))

    def __contains__(self, name: object) -> bool:
        return name in self._configured or name in self._built

    def get(self, name: str) -> Transport:
        """The transport called ``name``, built the first time."""
        transport = self._built.get(name)
        if transport is None:
            with self._lock:
                transport = self._built.get(name)
                if transport is None:
                    config = self._configured.get(name)
                    if config is None:
                        known = ", ".join(self.names) or "none"
                        raise ConfigurationError(
                            f"no transport named {name!r} (configured: {known})"
                        )
                    transport = self._built[name] = self._create(name, config)
        return transport

    def add(self, name: str, transport: Transport | str | TransportConfig) -> Transport:
        """Add a transport under a new name: a ready object, a DSN or a configuration."""
        with self._lock:
            if name in self:
                raise ConfigurationError(f"a transport named {name!r} exists already")
            if isinstance(transport, str):
                transport = TransportConfig(dsn=transport)
            if isinstance(transport, TransportConfig):
                transport = self._create(name, transport)
            self._built[name] = transport
            return transport

    def built(self, name: str) -> Transport | None:
        """The transport called ``name`` if it was built (or added), else ``None``."""
        return self._built.get(name)

    def replace(self, name: str, transport: Transport | None) -> Transport | None:
        """Put ``transport`` in the place of ``name`` (``None``: forget it, so that it is
        built again from the configuration on next use); returns the one it replaced."""
        with self._lock:
            previous = self._built.pop(name, None)
            if transport is not None:
                self._built[name] = transport
            return previous

    def close(self) -> None:
        """Close every transport that was built, and forget them."""
        with self._lock:
            transports, self._built = list(self._built.values()), {}
        for transport in transports:
            transport.close()
