"""A producer for the restart test: ``python amqp_producer_process.py COUNT PAUSE``.

Dispatches ``Job(0)`` .. ``Job(COUNT - 1)`` through the test application's bus (routed to the
AMQP transport), one every ``PAUSE`` seconds, and prints one line per dispatch:
``sent <id>`` or ``error <id> <exception type>: <message>``.
"""

from __future__ import annotations

import sys
import time

from amqp_app import Job, messenger


def main(count: int, pause: float) -> None:
    for number in range(count):
        try:
            messenger.bus.dispatch(Job(number))
        except Exception as error:
            text = " ".join(str(error).split())
            print(f"error {number} {type(error).__name__}: {text}", flush=True)
        else:
            print(f"sent {number}", flush=True)
        time.sleep(pause)
    messenger.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
