"""Benchmark of the AMQP transport against raw pika doing the same by hand.

    python bench/amqp_transport.py [--messages 20000] [--runs 5] [--batch-size 1000]
        [--prefetch 1000] [--dsn amqp://guest:guest@127.0.0.1:5672/%2f] [--symfony-rate 5200]
    python bench/amqp_transport.py --clients [--messages 20000] [--runs 3] [--prefetch 1000]

For each run, on a fresh exchange and queue (durable, persistent messages):

1. **send**: ``--messages`` messages dispatched one by one on the bus, routed to the AMQP
   transport with its default options (no publisher confirms);
2. **batch send**: as many again with the transport's ``send_batch``, ``--batch-size`` per call;
3. **batch send, confirms**: as many again with ``confirm_timeout`` set, so that each
   ``send_batch`` returns once the broker confirmed the whole batch;
4. **consume**: the real ``Worker`` (what ``messenger consume`` runs) receives, handles and
   acknowledges ``--messages`` of them with the transport's **default options**, then as many
   again **tuned** (``prefetch_count`` = ``--prefetch``).

Raw pika (``BlockingConnection``) does the same by hand in the same run, each figure measured
next to its counterpart, with a pre-encoded body and headers of the same size: ``basic_publish``
one by one; published on the channel underneath and written once per batch; the same with one
confirm round per batch; ``basic.consume`` with a prefetch window of ``--prefetch`` acking each
message, and with one multiple-ack per 100. The ratios show what the transport adds
(serialization with the JSON serializer, envelopes, the bus and the worker). Figures are
messages per second, the median of ``--runs`` runs, and beside them the CPU time this process
spent per message (every thread): on a machine shared with other work the rate varies a lot
from run to run, the CPU time much less. The load average is printed before and after.
Consumption is also compared with Symfony Messenger's AMQP consumer: where PHP and Symfony
Messenger (Debian's packages) are installed, each run also times Symfony's worker with its
default options on a queue of its own (``bench/symfony_amqp_consume.php``); elsewhere the
ratio is to ``--symfony-rate`` (5,200/s by default, the figure issue 12 quotes).

A worker that stops (here: at its message limit) while RabbitMQ still pushes deliveries to it
may leave messages flagged redelivered that no handler saw; the next worker's
reject-redelivered middleware then fails them (and they are retried). The bench counts them
and says so under the figures.

``--clients`` compares the two maintained blocking AMQP 0-9-1 clients by hand instead: pika and
py-amqp (the ``amqp`` package), publishing without confirms, with a confirm per message,
consuming with an ack per message and with one multiple-ack per 100 (the figures the plugin's
choice of client rests on).

The broker comes from ``--dsn``, else ``MESSENGER_TEST_AMQP_DSN``, else the local RabbitMQ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from _amqp_raw import CLIENTS, Measure, RawPika, RawPyAmqp, Stopwatch
from _workload import OrderPlaced, envelope

from messenger_core import Messenger
from messenger_core.stop_signal import FileStopSignal
from messenger_core.transport import BatchSender

DEFAULT_DSN = os.environ.get("MESSENGER_TEST_AMQP_DSN") or "amqp://guest:guest@127.0.0.1:5672/%2f"
SYMFONY_RATE = 5_200
"""Symfony Messenger's AMQP consumer, messages/s on the development machine (issue 12)."""


def server(dsn: str) -> str:
    """The DSN without its exchange segment: scheme, credentials, host and virtual host."""
    scheme, rest = dsn.split("://", 1)
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}/{path.split('/')[0] or '%2f'}"


# -- the transport ---------------------------------------------------------------------------
def messenger_for(dsn: str, exchange: str, **options: Any) -> Messenger:
    """An application with the AMQP transport ``bench`` on ``exchange`` (its queue of the same
    name), ``OrderPlaced`` routed to it and handled by a handler that does nothing."""
    (factory,) = entry_points(group="messenger.transports", name="amqp")
    config = {
        "transports": {
            "bench": {
                "dsn": f"{server(dsn)}/{exchange}",
                "options": options,
            }
        },
        "routing": {OrderPlaced: ["bench"]},
    }
    messenger = Messenger(config, autoload=False, transports={"amqp": factory.load()})
    messenger.register_message(OrderPlaced, "bench.OrderPlaced")
    messenger.handler(on_order_placed)
    return messenger


handled = 0
redelivered: list[int] = []
"""Per consuming worker: messages it received flagged redelivered (and so failed)."""


def on_order_placed(message: OrderPlaced) -> None:
    global handled  # noqa: PLW0603  (a counter the worker's handler bumps)
    handled += 1


def transport_send(dsn: str, exchange: str, count: int) -> Measure:
    """``count`` dispatches on the bus, each sent to the transport."""
    with messenger_for(dsn, exchange) as messenger:
        transport = messenger.get_transport("bench")
        transport.setup()  # type: ignore[attr-defined]
        messages = [envelope(number).message for number in range(count)]
        dispatch = messenger.bus.dispatch
        started = Stopwatch()
        for message in messages:
            dispatch(message)
        return started.measure(count)


def transport_send_batch(
    dsn: str, exchange: str, count: int, batch_size: int, **options: Any
) -> Measure:
    with messenger_for(dsn, exchange, **options) as messenger:
        transport = messenger.get_transport("bench")
        assert isinstance(transport, BatchSender)
        envelopes = [envelope(number) for number in range(count)]
        started = Stopwatch()
        for start in range(0, count, batch_size):
            transport.send_batch(envelopes[start : start + batch_size])
        return started.measure(count)


def transport_consume(dsn: str, exchange: str, count: int, **options: Any) -> Measure:
    """The real worker handling ``count`` messages and acknowledging each."""
    global handled  # noqa: PLW0603
    handled = 0
    stop_file = Path(tempfile.mkdtemp(prefix="messenger-bench-")) / "stop-workers"
    with messenger_for(dsn, exchange, **options) as messenger:
        worker = messenger.worker(["bench"], stop_signal=FileStopSignal(stop_file))
        started = Stopwatch()
        stats = worker.run(limit=count, handle_signals=False)
        elapsed = started.measure(count)
    assert stats.received == count, stats
    # A message the previous worker had in flight when it stopped comes back flagged
    # redelivered (see the report): the reject-redelivered middleware fails it (then retried).
    assert handled + stats.failed == count, (handled, stats)
    redelivered.append(stats.failed)
    return elapsed


# -- running ---------------------------------------------------------------------------------
@contextmanager
def fresh_exchange(dsn: str) -> Iterator[RawPika]:
    """An exchange and a queue of the same, new name; deleted afterwards."""
    name = f"bench-{uuid.uuid4().hex[:12]}"
    raw = RawPika(server(dsn), name, name)
    try:
        yield raw
    finally:
        raw.delete()
        raw.close()


SEND = "send"
BATCH = "batch send"
CONFIRMED = "batch send, confirms"
DEFAULTS = "consume, default options"
TUNED = "consume, tuned"
RAW_EACH = "raw consume, ack each"
RAW_MULTIPLE = "raw consume, multiple-ack per 100"


def one_run(dsn: str, args: argparse.Namespace, raw_first: bool) -> dict[str, Measure]:
    """One run; each transport figure is measured right next to its raw counterpart (which
    goes first alternates between runs), so that their ratio holds on a machine whose speed
    varies."""
    n, batch, prefetch = args.messages, args.batch_size, args.prefetch
    figures: dict[str, Measure] = {}

    def pair(ours: Callable[[], None], theirs: Callable[[], None]) -> None:
        for step in (theirs, ours) if raw_first else (ours, theirs):
            step()

    with fresh_exchange(dsn) as queue, fresh_exchange(dsn) as raw:
        name = queue.queue

        def put(key: str, measure: Callable[[], Measure]) -> Callable[[], None]:
            return lambda: figures.__setitem__(key, measure())

        pair(
            put(SEND, lambda: transport_send(dsn, name, n)),
            put(f"raw {SEND}", lambda: raw.publish(n)),
        )
        pair(
            put(BATCH, lambda: transport_send_batch(dsn, name, n, batch)),
            put(f"raw {BATCH}", lambda: raw.publish_batch(n, batch)),
        )
        pair(
            put(CONFIRMED, lambda: transport_send_batch(dsn, name, n, batch, confirm_timeout=10)),
            put(f"raw {CONFIRMED}", lambda: raw.publish_batch_confirm(n, batch)),
        )
        sent = queue.message_count()  # the transport's close waited for the confirms
        assert sent == 3 * n, f"{sent} messages in the queue, not {3 * n}"
        pair(
            put(DEFAULTS, lambda: transport_consume(dsn, name, n)),
            put(RAW_EACH, lambda: raw.consume(n, prefetch, 1)),
        )
        pair(
            put(TUNED, lambda: transport_consume(dsn, name, n, prefetch_count=prefetch)),
            put(RAW_MULTIPLE, lambda: raw.consume(n, prefetch, 100)),
        )
    if symfony_available():
        with fresh_exchange(dsn) as symfony:
            figures[SYMFONY] = symfony_consume(dsn, symfony.queue, n)
    return figures


# -- Symfony ---------------------------------------------------------------------------------
SYMFONY_SCRIPT = Path(__file__).with_name("symfony_amqp_consume.php")
SYMFONY = "Symfony's consumer, defaults"


def symfony_available() -> bool:
    """Whether PHP and Symfony Messenger's AMQP transport (Debian's packages) are here."""
    bridge = Path("/usr/share/php/Symfony/Component/Messenger/Bridge/Amqp")
    return shutil.which("php") is not None and bridge.is_dir()


def symfony_consume(dsn: str, exchange: str, count: int) -> Measure:
    """Symfony Messenger's worker consuming ``count`` messages with the AMQP transport's
    defaults (``bench/symfony_amqp_consume.php``); its CPU time is the PHP process's."""
    finished = subprocess.run(
        ["php", str(SYMFONY_SCRIPT), f"{server(dsn)}/{exchange}", str(count)],
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"the Symfony consumer failed: {finished.stderr.strip()}")
    result = json.loads(finished.stdout)
    return Measure(count, result["seconds"], result["cpu_us"] * count / 1e6)


ROWS = (
    (SEND, f"raw {SEND}"),
    (BATCH, f"raw {BATCH}"),
    (CONFIRMED, f"raw {CONFIRMED}"),
    (DEFAULTS, RAW_EACH),
    (TUNED, RAW_EACH),
    (TUNED, RAW_MULTIPLE),
)


def report(runs: list[dict[str, Measure]], args: argparse.Namespace) -> None:
    def rate(key: str) -> float:
        return statistics.median(run[key].rate for run in runs)

    def cpu(key: str) -> float:
        return statistics.median(run[key].cpu_us for run in runs)

    print(
        f"AMQP transport at {server(args.dsn).split('@')[-1]}: {args.messages} messages, "
        f"batches of {args.batch_size}, tuned prefetch_count {args.prefetch}; median of "
        f"{args.runs} runs: messages/s, and CPU microseconds of this process per message"
    )
    print(f"  {'':26} {'msg/s':>9} {'':34} {'msg/s':>9} {'ratio':>6} {'CPU us':>7} {'':>7}")
    print(f"  {'transport':26} {'':9} {'raw pika':34} {'':9} {'':6} {'ours':>7} {'raw':>7}")
    for ours, theirs in ROWS:
        ratio = statistics.median(run[ours].rate / run[theirs].rate for run in runs)
        print(
            f"  {ours:26} {rate(ours):9,.0f} {theirs:34} {rate(theirs):9,.0f} {ratio:6.2f} "
            f"{cpu(ours):7.1f} {cpu(theirs):7.1f}"
        )
    measured = all(SYMFONY in run for run in runs)
    if measured:
        print(
            f"  {SYMFONY:26} {rate(SYMFONY):9,.0f} (Symfony Messenger's worker, same run; "
            f"CPU us of the PHP process: {cpu(SYMFONY):.1f})"
        )
    for key in (DEFAULTS, TUNED):
        if measured:
            ratio = statistics.median(run[key].rate / run[SYMFONY].rate for run in runs)
            print(f"  {key} / Symfony's consumer, same run: {ratio:.2f}x")
        else:
            print(
                f"  {key} / Symfony's AMQP consumer ({args.symfony_rate:,.0f}/s, given: PHP "
                f"and Symfony Messenger are not installed): "
                f"{rate(key) / args.symfony_rate:.2f}x"
            )
    if any(redelivered):
        print(
            f"  {sum(redelivered)} message(s) came to a worker flagged redelivered, never "
            f"handled before (most in one worker: {max(redelivered)}): failed by the "
            "reject-redelivered middleware, then retried"
        )


# -- the clients -----------------------------------------------------------------------------
CLIENT_FIGURES = (
    "publish, no confirms",
    "publish, confirm each",
    "consume, ack each",
    "consume, multiple-ack per 100",
)


def clients_run(dsn: str, args: argparse.Namespace, reverse: bool) -> dict[str, Measure]:
    """One run: each figure is measured with one client right after the other (which goes
    first alternates between runs), each client on its own exchange and queue."""
    n, prefetch = args.messages, args.prefetch
    names = list(CLIENTS)[::-1] if reverse else list(CLIENTS)
    raws = {}
    try:
        for client in names:
            name = f"bench-{uuid.uuid4().hex[:12]}"
            raws[client] = CLIENTS[client](server(dsn), name, name)
        steps: dict[str, Callable[[RawPika | RawPyAmqp], Measure]] = {
            CLIENT_FIGURES[0]: lambda raw: raw.publish(n),
            CLIENT_FIGURES[1]: lambda raw: raw.publish_confirm_each(n),
            CLIENT_FIGURES[2]: lambda raw: raw.consume(n, prefetch, 1),
            CLIENT_FIGURES[3]: lambda raw: raw.consume(n, prefetch, 100),
        }
        figures = {}
        for figure, step in steps.items():
            for client in names:
                figures[f"{client}: {figure}"] = step(raws[client])
        return figures
    finally:
        for raw in raws.values():
            raw.delete()
            raw.close()


def clients_report(runs: list[dict[str, Measure]], args: argparse.Namespace) -> None:
    print(
        f"raw AMQP clients: {args.messages} persistent messages, prefetch {args.prefetch}; "
        f"median of {args.runs} runs: messages/s, and CPU microseconds of this process per "
        "message"
    )
    header = "".join(f"{client + ' msg/s':>15}" for client in CLIENTS)
    print(f"  {'':32}{header}" + "".join(f"{client + ' CPU us':>16}" for client in CLIENTS))
    for figure in CLIENT_FIGURES:
        each = [[run[f"{c}: {figure}"] for run in runs] for c in CLIENTS]
        rates = [statistics.median(m.rate for m in measures) for measures in each]
        cpus = [statistics.median(m.cpu_us for m in measures) for measures in each]
        print(
            f"  {figure:32}"
            + "".join(f"{value:15,.0f}" for value in rates)
            + "".join(f"{value:16.1f}" for value in cpus)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", action="store_true", help="compare pika and py-amqp")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=None, help="default 5 (3 with --clients)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--symfony-rate", type=float, default=SYMFONY_RATE)
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 3 if args.clients else 5

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.clients:
        runs = [clients_run(args.dsn, args, bool(number % 2)) for number in range(args.runs)]
        clients_report(runs, args)
    else:
        runs = [one_run(args.dsn, args, bool(number % 2)) for number in range(args.runs)]
        report(runs, args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
