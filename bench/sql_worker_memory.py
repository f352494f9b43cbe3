"""Resident memory of ``messenger consume`` on a SQLite queue, and where it goes (Linux).

    python bench/sql_worker_memory.py [--messages 20] [--idle 3]

Queues ``--messages`` messages in a temporary SQLite file, starts ``messenger consume`` as a
subprocess, lets it handle them and idle ``--idle`` seconds on the empty queue, then prints its
``VmRSS`` (and peak ``VmHWM``) from ``/proc``. A breakdown follows: the RSS of fresh
interpreters importing ever more of what the worker imports, and the SQL dialects the worker
loaded (only SQLite's should be there). Target (issue 8): 45 MB or less.

Measure with bytecode caches, as an installed worker runs: with ``PYTHONDONTWRITEBYTECODE`` set
(and no ``__pycache__``), every module of the project is compiled at import, and what the
compiler allocated stays resident (about 1 MB more). ``PYTHONPYCACHEPREFIX=/some/dir`` keeps
the caches out of the source tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
import attrs
from messenger_core import Messenger

messenger = Messenger.from_config("messenger.toml")


@attrs.frozen
class Ping:
    id: int


@messenger.handler
def on_ping(message: Ping) -> None:
    pass
"""

CONFIG = """
[messenger]
app = "memory_app:messenger"

[messenger.transports.async]
dsn = "sqlite:///messages.db?queue_name=async"

[messenger.routing]
"memory_app.Ping" = "async"
"""

STEPS = [
    ("python", "pass"),
    ("+ messenger_core", "import messenger_core"),
    ("+ messenger_core.cli", "import messenger_core.cli"),
    ("+ sqlalchemy", "import messenger_core.cli, sqlalchemy"),
    ("+ the SQL plugin", "import messenger_core.cli, messenger_transport_sql"),
]


def status(pid: int | str, *fields: str) -> dict[str, int]:
    """Fields of ``/proc/<pid>/status`` in kB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            found[name] = int(value.split()[0])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--idle", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "memory_app.py").write_text(APP)
        (root / "messenger.toml").write_text(CONFIG)
        env = {**os.environ, "PYTHONPATH": str(root)}
        env.pop("MESSENGER_APP", None)
        queue = f"""
from memory_app import messenger, Ping
for number in range({args.messages}):
    messenger.bus.dispatch(Ping(number))
"""
        subprocess.run([sys.executable, "-c", queue], cwd=root, env=env, check=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "messenger_core", "consume", "async", "--sleep", "0.2"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until every message is handled
                check = "import sqlite3; c = sqlite3.connect('messages.db'); "
                check += "print(c.execute('SELECT COUNT(*) FROM messenger_messages').fetchone()[0])"
                left = subprocess.run(
                    [sys.executable, "-c", check],
                    cwd=root,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if left.stdout.strip() == "0":
                    break
                time.sleep(0.2)
            time.sleep(args.idle)
            memory = status(worker.pid, "VmRSS", "VmHWM")
        finally:
            worker.terminate()
            worker.wait()
    print(
        f"messenger consume on SQLite, idle after {args.messages} messages: "
        f"VmRSS {memory['VmRSS'] / 1024:.1f} MB (peak {memory['VmHWM'] / 1024:.1f} MB)"
    )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("(PYTHONDONTWRITEBYTECODE is set: compiled at import, about 1 MB more, see above)")
    print("\nbreakdown (fresh interpreters):")
    for label, statement in STEPS:
        probe = f"{statement}\nimport sys\nprint(open('/proc/self/status').read())"
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        rss = next(
            int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("VmRSS")
        )
        print(f"  {label:22} {rss / 1024:6.1f} MB")
    probe = (
        "import sys, json, messenger_transport_sql.transport\n"
        "from messenger_transport_sql import SqlTransportFactory\n"
        "from messenger_core.dsn import Dsn\n"
        "from messenger_core.serialization.json import JsonSerializer\n"
        "from messenger_core.message_types import MessageTypeRegistry\n"
        "t = SqlTransportFactory().create(Dsn.parse('sqlite:///:memory:'), {}, "
        "JsonSerializer(MessageTypeRegistry()))\nt.get()\nt.close()\n"
        "print(json.dumps(sorted({m.split('.')[2] for m in sys.modules "
        "if m.startswith('sqlalchemy.dialects.') and m.count('.') >= 2})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    print(f"\nSQL dialects a SQLite transport loads: {', '.join(json.loads(out.stdout))}")


if __name__ == "__main__":
    main()
