"""The shop demo, from a fresh start to a summary. Run: ``python examples/shop/run.py``.

1. empties ``var/`` and creates the transports' table (``messenger setup-transports``);
2. places a few hundred orders: one ``OrderPlaced`` message each, sent to the ``orders``
   transport (a table in ``var/shop.db``);
3. runs a worker (``messenger consume orders``) until every order is done, then stops it with
   ``messenger stop-workers``;
4. shows ``messenger stats`` and ``messenger failed show``, and explains what happened.

The ``messenger`` commands run in their own processes, exactly as you would type them (through
``python -m messenger_core``, which is the same program).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
STARTED_IN = Path.cwd()
VAR = HERE / "var"
DEADLINE = 120.0
"""Seconds the worker may take at most (it needs a few)."""

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Edsger Dijkstra", "edsger@example.com"),
    ("Barbara Liskov", "barbara@example.com"),
]
PRODUCTS = [("TEA-EARL-GREY", 650), ("TEA-SENCHA", 890), ("MUG-WHITE", 1200), ("KETTLE", 3900)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300, help="how many orders (default 300)")
    args = parser.parse_args()

    os.chdir(HERE)  # messenger.toml and its relative sqlite:///var/... paths live here
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        # Only this demo's worker listens to this demo's stop-workers.
        "MESSENGER_STOP_SIGNAL_FILE": str(VAR / "stop-workers"),
    }

    heading("1. A fresh start: var/ emptied, transports set up")
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir()
    messenger("setup-transports", env=environment)

    heading(f"2. Placing {args.orders} orders")
    place_orders(args.orders)
    print(f"{args.orders} OrderPlaced messages are waiting in the 'orders' transport.")

    heading("3. A worker handles them: messenger consume orders")
    consume_until_done(environment)

    heading("4. messenger stats")
    messenger("stats", env=environment)
    heading("5. messenger failed show")
    messenger("failed", "show", env=environment)

    return summary(args.orders, environment)


def place_orders(count: int) -> None:
    """Dispatch ``count`` orders from this process, as a web shop would."""
    sys.path.insert(0, str(HERE))
    import shop.app  # noqa: PLC0415  (needs the fresh var/ first)
    from shop.messages import OrderPlaced  # noqa: PLC0415

    for order_id in range(1, count + 1):
        customer, email = CUSTOMERS[order_id % len(CUSTOMERS)]
        sku, price = PRODUCTS[order_id % len(PRODUCTS)]
        quantity = 1 + order_id % 3
        shop.app.messenger.bus.dispatch(
            OrderPlaced(order_id, customer, email, sku, quantity, total_cents=price * quantity)
        )
    shop.app.messenger.close()


def consume_until_done(environment: dict[str, str]) -> None:
    """Run the worker until the orders table is empty, then ask it to stop."""
    worker = subprocess.Popen(
        [*COMMAND, "consume", "orders", "--sleep", "0.1", "--time-limit", str(DEADLINE)],
        env=environment,
    )
    deadline = time.monotonic() + DEADLINE
    # A message being handled or waiting for its retry is still a row of the table (a retry
    # copy is written before the original is removed), so no row means nothing left to do.
    while remaining("orders") and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    messenger("stop-workers", env=environment, quiet=True)
    code = worker.wait(DEADLINE)
    print(f"\nThe worker stopped (exit code {code}).")
    if code != 0:
        raise SystemExit(f"the worker failed with exit code {code}")


def summary(orders: int, environment: dict[str, str]) -> int:
    """Print what happened from the traces the handlers left; 1 if something is off."""
    with sqlite3.connect(VAR / "inventory.db") as db:
        reserved = db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
    outbox = (VAR / "outbox.txt").read_text(encoding="utf-8")
    mails = outbox.count("\nSubject: ") + outbox.startswith("Subject: ")
    tries: dict[int, list[str]] = defaultdict(list)
    for line in (VAR / "warehouse.log").read_text(encoding="utf-8").splitlines():
        match = re.match(r"order (\d+) try \d+: (\w+)", line)
        if match:
            tries[int(match[1])].append(match[2])
    first_time = sum(1 for t in tries.values() if t == ["shipped"])
    recovered = sum(1 for t in tries.values() if t[-1] == "shipped" and len(t) > 1)
    stats = json.loads(messenger("stats", "--format", "json", env=environment, quiet=True))
    parked = stats["transports"]["failed"]["count"]

    where = "" if STARTED_IN == HERE else f", in {relative(HERE, STARTED_IN)}"
    cli, python = command_names()
    suggestions = [
        (f"{cli} failed show", "the parked messages (add an id for one in detail)"),
        ("touch var/warehouse-fixed", '"repair" the warehouse...'),
        (f"{cli} failed retry --all --force", "...and handle the parked messages again"),
        (f"{cli} stats", "messages waiting per transport"),
        (f"{cli} consume orders -v", "a worker, a log line per message (Ctrl-C stops it)"),
        (f"{python} run.py", "start over"),
    ]
    tox_environment = os.environ.get("TOX_ENV_DIR")
    if tox_environment and Path(sys.prefix) == Path(tox_environment):
        # tox put its environment on PATH for this run only: the shell needs it too.
        activate = relative(Path(tox_environment) / "bin" / "activate", HERE)
        suggestions.insert(0, (f"source {activate}", "first: the environment tox made"))
    width = max(len(command) for command, _ in suggestions)
    try_next = "\n".join(f"  {command:<{width}}  {what}" for command, what in suggestions)
    heading("What happened")
    print(
        f"""\
run.py dispatched {orders} OrderPlaced messages on the bus. The routing in messenger.toml
sent them to the 'orders' transport (a table in var/shop.db) instead of handling them at once.
Then a worker, another process, handled them one by one with three handlers:

  reserve_stock       {reserved:>4} reservations     var/inventory.db
  send_confirmation   {mails:>4} e-mails          var/outbox.txt
  notify_warehouse    {first_time:>4} shipped at once  var/warehouse.log (one line per try)
                      {recovered:>4} failed, then shipped on a retry
                      {parked:>4} failed every retry and were parked in the 'failed' transport

A failed message is sent again later (50 ms, then 100, then 200: retry_strategy in
messenger.toml); a retry skips the handlers that already succeeded, so no order was reserved
or e-mailed twice. After 3 retries it is kept in the failure transport, with its error, until
someone looks at it. Nothing is lost.

Try next{where}:

{try_next}

The code: shop/messages.py (the message), shop/handlers.py (the handlers), shop/app.py and
messenger.toml (transports, routing, retries). More in README.md."""
    )
    problems = []
    if reserved != orders:
        problems.append(f"{reserved} reservations for {orders} orders")
    if mails != orders:
        problems.append(f"{mails} e-mails for {orders} orders")
    if first_time + recovered + parked != orders:
        problems.append(f"{first_time} + {recovered} + {parked} warehouse outcomes != {orders}")
    if problems:
        print("\nSomething went wrong: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


COMMAND = [sys.executable, "-m", "messenger_core"]


def messenger(*args: str, env: dict[str, str], quiet: bool = False) -> str:
    """Run ``messenger ARGS`` in its own process; its output is shown unless ``quiet``."""
    if not quiet:
        print(f"$ messenger {' '.join(args)}", flush=True)
    done = subprocess.run([*COMMAND, *args], env=env, check=False, text=True, capture_output=quiet)
    if done.returncode != 0:
        raise SystemExit(f"messenger {' '.join(args)} failed with exit code {done.returncode}")
    return done.stdout if quiet else ""


def remaining(queue: str) -> int:
    """Rows of ``queue`` still in the table: waiting, delayed, or being handled."""
    with sqlite3.connect(VAR / "shop.db", timeout=30) as db:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM messenger_messages WHERE queue_name = ?", (queue,)
            ).fetchone()[0]
        )


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` where that is shorter."""
    text = os.path.relpath(path, start)
    return text if len(text) < len(str(path)) else str(path)


def command_names() -> tuple[str, str]:
    """How to call ``messenger`` and Python from a shell: by name if the shell finds them."""
    bin_dir = Path(sys.executable).parent
    cli = bin_dir / "messenger"
    messenger_name = "messenger"
    if not cli.exists():
        messenger_name = f"{relative(Path(sys.executable), HERE)} -m messenger_core"
    elif shutil.which("messenger") != str(cli):
        messenger_name = relative(cli, HERE)  # e.g. a tox environment that is not active
    python_name = "python"
    if shutil.which("python") != sys.executable:
        python_name = relative(Path(sys.executable), HERE)
    return messenger_name, python_name


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
