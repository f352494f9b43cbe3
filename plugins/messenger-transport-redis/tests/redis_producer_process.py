"""A producer for the restart tests: ``python redis_producer_process.py COUNT PAUSE``.

Dispatches ``Job(0)`` .. ``Job(COUNT - 1)`` through the test application's bus (routed to the
Redis transport), one every ``PAUSE`` seconds, and prints one line per dispatch:
``sent <id> <entry id>`` or ``error <id> <exception type>: <message>``.
"""

from __future__ import annotations

import sys
import time

from redis_app import Job, messenger

from messenger_core.stamps import TransportMessageIdStamp


def main(count: int, pause: float) -> None:
    for number in range(count):
        try:
            envelope = messenger.bus.dispatch(Job(number))
        except Exception as error:
            text = " ".join(str(error).split())
            print(f"error {number} {type(error).__name__}: {text}", flush=True)
        else:
            stamp = envelope.last(TransportMessageIdStamp)
            print(f"sent {number} {stamp.id if stamp else '-'}", flush=True)
        time.sleep(pause)
    messenger.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
