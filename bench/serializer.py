"""Benchmark: the ``json`` serializer's encode + decode of a typical message, against raw json.

    python bench/serializer.py [--messages 20000] [--repeats 15]

The message is the transport benchmarks' ``OrderPlaced`` (``bench/_workload.py``) with the
stamps a sent message carries (its bus name). Printed, each the median of ``--repeats``
interleaved runs:
the serializer's encode, decode and the round trip (encode then decode), and in the same run
``json.dumps`` + ``json.loads`` of the same body and a stamp header, the floor any JSON
serializer builds on. The JSON backend in use is printed first (``orjson`` when the
``messenger-core[fast]`` extra is installed, else the standard library's ``json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from _workload import envelope, serializer

from messenger_core.envelope import Envelope
from messenger_core.serialization import json as json_serialization
from messenger_core.stamps import BusNameStamp


def _rate(run: Callable[[int], None], count: int) -> float:
    started = time.perf_counter()
    run(count)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15, help="median of this many runs")
    args = parser.parse_args()

    codec = serializer()
    sent: Envelope = envelope(1).with_(BusNameStamp(bus_name="messenger.bus.default"))
    message = codec.encode(sent)
    assert codec.decode(message).message == sent.message
    value = json.loads(message.body)
    [stamp_header] = [h for h in message.headers if h.startswith("X-Message-Stamp-")]
    stamp_value = json.loads(message.headers[stamp_header])

    def encode(count: int) -> None:
        for _ in range(count):
            codec.encode(sent)

    def decode(count: int) -> None:
        for _ in range(count):
            codec.decode(message)

    def round_trip(count: int) -> None:
        for _ in range(count):
            codec.decode(codec.encode(sent))

    dumps, loads = json.dumps, json.loads

    def raw_json(count: int) -> None:
        for _ in range(count):
            loads(dumps(value).encode())
            loads(dumps(stamp_value))

    round_trip(5_000)  # warm the per-class caches
    backend = getattr(json_serialization, "JSON_BACKEND", "json (private C encoder/scanner)")
    print(f"JSON backend                          : {backend}")
    runs = {
        "encode": encode,
        "decode": decode,
        "encode + decode": round_trip,
        "raw json.dumps + json.loads": raw_json,
    }
    # Interleaved, so that the noise of a shared machine hits every figure alike.
    samples: dict[str, list[float]] = {name: [] for name in runs}
    ratios = []
    for _ in range(args.repeats):
        for name, run in runs.items():
            samples[name].append(_rate(run, args.messages))
        ratios.append(samples["encode + decode"][-1] / samples["raw json.dumps + json.loads"][-1])
    for name, rates in samples.items():
        rate = statistics.median(rates)
        print(f"{name:38s}: {rate:>10,.0f} messages/s  ({1e6 / rate:6.2f} µs)")
    print(f"{'ratio serializer / raw json':38s}: {statistics.median(ratios):>10.3f}")


if __name__ == "__main__":
    main()
