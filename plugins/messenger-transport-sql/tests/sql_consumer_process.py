"""A consumer in a process of its own, for the crash and multi-process tests.

python consumer_process.py hold DSN OPTIONS_JSON    receive one message, print its id, sleep
python consumer_process.py drain DSN OPTIONS_JSON   print "ready", wait for a line on stdin,
                                                    then receive and acknowledge until the
                                                    queue stays empty; print each number
"""

from __future__ import annotations

import json
import sys
import time

import attrs
from messenger_transport_sql import SqlTransportFactory

from messenger_core.dsn import Dsn
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.json import JsonSerializer
from messenger_core.stamps import TransportMessageIdStamp


@attrs.frozen
class Order:
    """Decodes what the tests send as ``tests.Order``."""

    id: int
    text: str = ""


def main(mode: str, dsn: str, options: dict[str, object]) -> None:
    registry = MessageTypeRegistry()
    registry.register(Order, "tests.Order")
    transport = SqlTransportFactory().create(Dsn.parse(dsn), options, JsonSerializer(registry))
    if mode == "hold":
        while not (received := transport.get()):
            time.sleep(0.01)
        stamp = received[0].last(TransportMessageIdStamp)
        assert stamp is not None
        print(f"holding {stamp.id}", flush=True)
        time.sleep(600)  # until killed
        return
    # Start together: a consumer that imports faster must not drain the queue alone.
    print("ready", flush=True)
    sys.stdin.readline()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        received = transport.get()
        for envelope in received:
            print(envelope.message.id, flush=True)
            transport.ack(envelope)
            # A little work per message, like a real handler: no consumer can drain the queue
            # alone before the others get going, so they really do run side by side.
            time.sleep(0.001)
        if received:
            quiet_since = time.monotonic()
        else:
            time.sleep(0.005)
    transport.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
