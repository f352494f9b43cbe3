"""A spool-directory transport: the template for messenger transport plugins.

Each message is one JSON file ``{"body": <base64>, "headers": {...}}`` named so that sorting
the names sorts by availability time. A consumer claims a file by renaming it, which is atomic:
exactly one consumer wins. Ack and reject delete the claimed file; a claim older than
``redeliver_timeout`` is taken over by whichever consumer sees it first.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.serializer import Serializer, decode_or_quarantine
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.transport import TransportCapabilities, TransportMessage
from messenger_core.transport_options import parse_seconds, reject_unknown_options

__all__ = ["ExampleTransport", "ExampleTransportFactory"]

_READY = ".msg"
_CLAIMED = ".claimed"
_OPTIONS = ("redeliver_timeout",)


class ExampleTransport:
    """Messages as files in ``directory``."""

    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities(
        delay=True, fifo=True, message_count=True, redelivery=True, concurrent_consumers=True
    )

    def __init__(self, directory: Path, serializer: Serializer, redeliver_timeout: float) -> None:
        self.directory = directory
        self.serializer = serializer
        self.redeliver_timeout = redeliver_timeout
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, envelope: Envelope) -> Envelope:
        """Write the message to a temporary file, then move it into place (readers never see
        half a file)."""
        encoded = self.serializer.encode(envelope)
        delay = envelope.last(DelayStamp)
        available_at = time.time_ns() + (delay.delay_ms * 1_000_000 if delay else 0)
        # Available time, then send time: sorting names gives the delivery order.
        name = f"{available_at:020d}-{time.time_ns():020d}-{uuid.uuid4().hex}"
        content = {
            "body": base64.b64encode(encoded.body).decode(),
            "headers": dict(encoded.headers),
        }
        temporary = self.directory / f".{name}.tmp"
        temporary.write_text(json.dumps(content))
        os.replace(temporary, self.directory / f"{name}{_READY}")
        return envelope.with_(TransportMessageIdStamp(id=name))

    def get(self) -> Iterable[Envelope]:
        """Claim the oldest available message (an abandoned claim counts as available)."""
        now = time.time_ns()
        for found in sorted(self.directory.iterdir()):
            path = found
            if path.suffix == _CLAIMED and self._abandoned(path):
                path = self._move(path, _READY) or path
            if path.suffix != _READY or int(path.stem.split("-", 1)[0]) > now:
                continue
            claimed = self._move(path, _CLAIMED)
            if claimed is not None:
                return [self._read(claimed, path.stem)]
        return []

    @staticmethod
    def _move(path: Path, suffix: str) -> Path | None:
        """Rename ``path`` to the same name with ``suffix``; None if another consumer won.

        A rename is atomic and sets the file's change time, which is when the claim was made.
        """
        target = path.with_suffix(suffix)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        return target

    def _abandoned(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_ctime > self.redeliver_timeout
        except FileNotFoundError:
            return False

    def _read(self, path: Path, name: str) -> Envelope:
        content = json.loads(path.read_text())
        message = TransportMessage(base64.b64decode(content["body"]), content["headers"], id=name)
        return decode_or_quarantine(self.serializer, message).with_(
            TransportMessageIdStamp(id=name)
        )

    def ack(self, envelope: Envelope) -> None:
        """Delete the claimed file."""
        self._delete(envelope)

    def reject(self, envelope: Envelope) -> None:
        """Delete the claimed file."""
        self._delete(envelope)

    def _delete(self, envelope: Envelope) -> None:
        stamp = envelope.last(TransportMessageIdStamp)
        if stamp is None:
            raise TransportError(
                "cannot settle a message that was not received from this transport"
            )
        (self.directory / f"{stamp.id}{_CLAIMED}").unlink(missing_ok=True)

    def message_count(self) -> int:
        """Messages waiting or claimed."""
        return sum(1 for p in self.directory.iterdir() if p.suffix in (_READY, _CLAIMED))

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its file."""


class ExampleTransportFactory:
    """Serves ``example:///absolute/path/to/directory`` DSNs."""

    def create(
        self, dsn: Dsn, options: Mapping[str, Any], serializer: Serializer
    ) -> ExampleTransport:
        """A transport over the directory named by the DSN's path."""
        # The configuration's options win over the DSN's query; the factory merges them, once.
        options = dsn.with_options(options)
        # The helpers of messenger_core.transport_options word errors as every transport does.
        reject_unknown_options(options, _OPTIONS, transport="example", dsn=dsn)
        if not dsn.path or dsn.path == "/":
            raise ConfigurationError(
                f"{dsn}: give the spool directory, e.g. example:///var/spool/messages"
            )
        timeout = parse_seconds("redeliver_timeout", options.get("redeliver_timeout", 3600))
        return ExampleTransport(Path(dsn.path), serializer, timeout)
