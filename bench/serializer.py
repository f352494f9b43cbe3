"""Benchmark: the ``json`` serializer's encode + decode of a typical message, against raw json.

    python bench/serializer.py [--messages 20000] [--repeats 15]

The message is the transport benchmarks' ``OrderPlaced`` (``bench/_workload.py``) with the
stamp a sent message carries (its bus name). For each JSON backend installed (the standard
library's ``json`` always, ``orjson`` with the ``messenger-core[fast]`` extra), the serializer's
encode, decode and round trip (encode then decode); and in the same run ``json.dumps`` +
``json.loads`` of the same body and stamp header, the floor any JSON serializer builds on. Each
figure is the median of ``--repeats`` runs, interleaved so that the noise of a shared machine
hits every figure alike; the ratios are the medians of the per-run ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from _workload import envelope, serializer

from messenger_core.envelope import Envelope
from messenger_core.serialization import _json_text
from messenger_core.serialization import json as json_serialization
from messenger_core.stamps import BusNameStamp


def _rate(run: Callable[[int], None], count: int) -> float:
    started = time.perf_counter()
    run(count)
    return count / (time.perf_counter() - started)


def _use(backend: _json_text.JsonText) -> None:
    json_serialization._dumps = backend.dumps
    json_serialization._dumps_bytes = backend.dumps_bytes
    json_serialization._loads = backend.loads


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

    backends = [b for b in (_json_text.JSON, _json_text.ORJSON) if b is not None]
    runs = {"encode": encode, "decode": decode, "encode + decode": round_trip}
    samples: dict[str, list[float]] = {"raw json.dumps + json.loads": []}
    ratios: dict[str, list[float]] = {}
    for backend in backends:
        _use(backend)
        round_trip(5_000)  # warm the per-class caches
        for name in runs:
            samples[f"{backend.name:6s} {name}"] = []
        ratios[backend.name] = []
    for _ in range(args.repeats):
        raw = _rate(raw_json, args.messages)
        samples["raw json.dumps + json.loads"].append(raw)
        for backend in backends:
            _use(backend)
            for name, run in runs.items():
                samples[f"{backend.name:6s} {name}"].append(_rate(run, args.messages))
            ratios[backend.name].append(samples[f"{backend.name:6s} encode + decode"][-1] / raw)
    _use(_json_text.backend())
    print(f"default JSON backend: {json_serialization.JSON_BACKEND}")
    for name, rates in samples.items():
        rate = statistics.median(rates)
        print(f"{name:30s}: {rate:>10,.0f} messages/s  ({1e6 / rate:6.2f} µs)")
    for name, values in ratios.items():
        print(f"{'ratio ' + name + ' round trip / raw':30s}: {statistics.median(values):>10.3f}")


if __name__ == "__main__":
    main()
