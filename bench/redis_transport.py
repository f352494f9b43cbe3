"""Benchmark of the Redis transport against raw redis-py doing the same stream commands.

    python bench/redis_transport.py [--messages 20000] [--runs 5] [--batch-size 1000]
                                    [--fetch-size 100] [--dsn redis://127.0.0.1:6379]

For each run, on fresh streams:

1. **send**: ``--messages`` messages sent one by one (one ``XADD`` round trip each);
2. **batch send**: as many again with ``send_batch``, ``--batch-size`` per call (one pipeline);
3. **consume**: one consumer receives and acknowledges all of them in a get/ack loop, twice:
   with the transport's **default options** (what a user gets with none) and **tuned**, with
   ``fetch_size`` = ``--fetch-size`` (acknowledgements at-least-once either way: each one is
   written to Redis before the next ``get()`` returns).

Raw redis-py does the same by hand, in the same run, with a pre-encoded entry of the same size:
``XADD`` one by one, pipelined ``XADD``, and consuming with ``XREADGROUP COUNT`` plus either an
``XACK`` + ``XDEL`` round trip per message or one ``XACK`` + ``XDEL`` per batch. The ratios show
what the transport adds (serialization with the JSON serializer, envelopes, the entry layout).
Figures are messages per second, the median of ``--runs`` runs. The Redis server comes from
``--dsn``, else ``MESSENGER_TEST_REDIS_DSN``, else the local one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from _workload import envelope, serializer
from messenger_transport_redis import RedisTransport, RedisTransportFactory, parse_options
from messenger_transport_redis.entry import encode_entry

from messenger_core.dsn import Dsn

DEFAULT_DSN = os.environ.get("MESSENGER_TEST_REDIS_DSN") or "redis://127.0.0.1:6379"
GROUP = "bench"


# -- the transport ---------------------------------------------------------------------------
def make_transport(dsn: str, stream: str, **options: Any) -> RedisTransport:
    options = {"stream": stream, "group": GROUP, **options}
    return RedisTransportFactory().create(Dsn.parse(dsn), options, serializer())


def transport_send(dsn: str, stream: str, count: int) -> float:
    transport = make_transport(dsn, stream)
    try:
        transport.setup()
        envelopes = [envelope(number) for number in range(count)]
        started = time.perf_counter()
        for each in envelopes:
            transport.send(each)
        return count / (time.perf_counter() - started)
    finally:
        transport.close()


def transport_send_batch(dsn: str, stream: str, count: int, batch_size: int) -> float:
    transport = make_transport(dsn, stream)
    try:
        transport.setup()
        envelopes = [envelope(number) for number in range(count)]
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            transport.send_batch(envelopes[start : start + batch_size])
        return count / (time.perf_counter() - started)
    finally:
        transport.close()


def transport_consume(dsn: str, stream: str, count: int, fetch_size: int | None) -> float:
    """Consume ``count`` messages; ``fetch_size`` ``None``: the default options."""
    options = {} if fetch_size is None else {"fetch_size": fetch_size}
    transport = make_transport(dsn, stream, **options)
    try:
        transport.setup()
        received = 0
        started = time.perf_counter()
        while received < count:
            for each in transport.get():
                transport.ack(each)
                received += 1
        transport.flush()
        return count / (time.perf_counter() - started)
    finally:
        transport.close()


# -- raw redis-py ----------------------------------------------------------------------------
class Raw:
    """The same stream commands by hand, with a pre-encoded entry."""

    def __init__(self, dsn: str, stream: str) -> None:
        parsed = Dsn.parse(dsn)
        options = parse_options(parsed.options, parsed.path if parsed.hosts else "")
        kwargs: dict[str, Any] = {"db": options.dbindex, "password": parsed.password}
        if parsed.hosts:
            kwargs.update(host=parsed.host, port=parsed.port or 6379)
        else:
            kwargs["unix_socket_path"] = parsed.path
        self.client = redis.Redis(**kwargs)
        self.stream = stream
        self.entry = {"message": encode_entry(serializer().encode(envelope(0)))}

    def send(self, count: int) -> float:
        client, stream, entry = self.client, self.stream, self.entry
        started = time.perf_counter()
        for _ in range(count):
            client.xadd(stream, entry)  # type: ignore[arg-type]
        return count / (time.perf_counter() - started)

    def send_batch(self, count: int, batch_size: int) -> float:
        client, stream, entry = self.client, self.stream, self.entry
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(batch_size, count - start)):
                pipe.xadd(stream, entry)  # type: ignore[arg-type]
            pipe.execute()
        return count / (time.perf_counter() - started)

    def consume(self, count: int, fetch_size: int, *, ack_per_message: bool) -> float:
        client, stream = self.client, self.stream
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: the group exists
            client.xgroup_create(stream, GROUP, "0", mkstream=True)
        received = 0
        started = time.perf_counter()
        while received < count:
            reply: Any = client.xreadgroup(GROUP, "raw", {stream: ">"}, count=fetch_size, block=100)
            ids = [entry_id for entry_id, _ in reply[0][1]] if reply else []
            if ack_per_message:
                for entry_id in ids:
                    pipe = client.pipeline(transaction=False)
                    pipe.xack(stream, GROUP, entry_id)
                    pipe.xdel(stream, entry_id)
                    pipe.execute()
            elif ids:
                pipe = client.pipeline(transaction=False)
                pipe.xack(stream, GROUP, *ids)
                pipe.xdel(stream, *ids)
                pipe.execute()
            received += len(ids)
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        self.client.close()


# -- running ---------------------------------------------------------------------------------
@contextmanager
def fresh_stream(dsn: str) -> Iterator[str]:
    """A stream name no one uses; the stream and its delay queue are deleted afterwards."""
    stream = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield stream
    finally:
        raw = Raw(dsn, stream)
        raw.client.delete(stream, f"{stream}__queue")
        raw.close()


def one_run(dsn: str, args: argparse.Namespace) -> dict[str, float]:
    """One run; each transport figure is measured right next to its raw counterpart, so that
    their ratio holds even on a machine whose speed varies (other processes, CPU boost)."""
    n, batch, fetch = args.messages, args.batch_size, args.fetch_size
    figures: dict[str, float] = {}
    with fresh_stream(dsn) as stream, fresh_stream(dsn) as raw_stream:
        raw = Raw(dsn, raw_stream)
        try:
            figures["send"] = transport_send(dsn, stream, n)
            figures["raw send"] = raw.send(n)
            figures["batch send"] = transport_send_batch(dsn, stream, n, batch)
            figures["raw batch send"] = raw.send_batch(n, batch)
            transport_send_batch(dsn, stream, n, batch)  # a third n, for fetch_size 1
            figures["consume, default options"] = transport_consume(dsn, stream, n, None)
            figures["consume"] = transport_consume(dsn, stream, n, fetch)
            figures["consume, fetch_size 1"] = transport_consume(dsn, stream, n, 1)
            figures["raw consume, ack per batch"] = raw.consume(2 * n, fetch, ack_per_message=False)
            raw.send_batch(n, batch)
            figures["raw consume, ack per message"] = raw.consume(n, fetch, ack_per_message=True)
        finally:
            raw.close()
    return figures


RATIOS = (
    ("send / raw send", "send", "raw send"),
    ("batch send / raw batch send", "batch send", "raw batch send"),
    ("consume / raw, ack per message", "consume", "raw consume, ack per message"),
    ("consume / raw, ack per batch", "consume", "raw consume, ack per batch"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--fetch-size", type=int, default=100)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()

    runs = [one_run(args.dsn, args) for _ in range(args.runs)]
    median = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print(
        f"Redis transport at {Dsn.parse(args.dsn)}: {args.messages} messages, "
        f"fetch_size {args.fetch_size}, batches of {args.batch_size}, "
        f"median of {args.runs} runs (messages/s)"
    )
    for name, value in median.items():
        print(f"  {name:<32} {value:>10,.0f}")
    print("consuming: default options beside tuned (median, messages/s)")
    rows = (
        (
            f"default options (fetch_size {parse_options({}).fetch_size})",
            "consume, default options",
        ),
        (f"tuned (fetch_size {args.fetch_size})", "consume"),
        ("fetch_size 1 (the default before)", "consume, fetch_size 1"),
    )
    for label, name in rows:
        print(f"  {label:<32} {median[name]:>10,.0f}")
    print("ratios (median of the runs' ratios)")
    for label, numerator, denominator in RATIOS:
        ratio = statistics.median(run[numerator] / run[denominator] for run in runs)
        print(f"  {label:<32} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
