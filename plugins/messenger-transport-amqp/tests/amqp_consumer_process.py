"""A consumer process for the crash test: ``python amqp_consumer_process.py DSN EXCHANGE ACKS``.

It acknowledges the first ``ACKS`` messages it receives (sent to RabbitMQ at once), printing
``acked <order id>`` for each, then receives one more, prints ``holding <order id>`` and
sleeps until it is killed, never settling that one (nor those in its prefetch window).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from amqp_test_support import Exchange


def main(dsn: str, name: str, acks: int) -> None:
    transport = Exchange(name, base_dsn=dsn).transport()
    acked = 0
    while True:
        for envelope in transport.get():
            if acked < acks:
                transport.ack(envelope)
                transport.flush()
                acked += 1
                print(f"acked {envelope.message.id}", flush=True)
            else:
                print(f"holding {envelope.message.id}", flush=True)
                while True:
                    time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
