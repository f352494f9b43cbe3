"""A consumer process for the crash tests: ``python redis_consumer_process.py DSN STREAM ACKS``.

It acknowledges the first ``ACKS`` messages it receives, printing ``acked <order id>`` for
each once Redis confirmed it, then receives one more, prints ``holding <order id>`` and sleeps
until it is killed, never settling that one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from redis_test_support import Stream


def main(dsn: str, stream_name: str, acks: int) -> None:
    transport = Stream(stream_name, base_dsn=dsn).transport(redeliver_timeout=1, claim_interval=50)
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
