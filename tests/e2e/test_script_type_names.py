"""A message sent by ``python shop.py`` is understood by ``messenger consume --app shop:...``.

The script's classes live in module ``__main__`` while it runs, but in module ``shop`` in a
worker that imports it: the wire name must be the same in both processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import attrs
from messenger_core import Messenger


@attrs.frozen
class OrderPlaced:
    order_id: int


messenger = Messenger(
    {
        "transports": {"async": "sqlite:///queue.db", "failed": "sqlite:///queue.db?queue_name=failed"},
        "failure_transport": "failed",
        "routing": {OrderPlaced: "async"},
    }
)


@messenger.handler
def confirm(message: OrderPlaced) -> None:
    with open("handled.txt", "a", encoding="utf-8") as out:
        out.write(f"{message.order_id}\\n")


if __name__ == "__main__":
    for number in range(3):
        messenger.bus.dispatch(OrderPlaced(order_id=number))
    messenger.close()
"""


def test_a_script_and_a_worker_importing_it_agree_on_type_names(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    sent = subprocess.run(
        [sys.executable, "shop.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    assert not (tmp_path / "handled.txt").exists()  # routed, not handled in the script

    consumed = subprocess.run(
        [
            *(sys.executable, "-m", "messenger_core", "--app", "shop:messenger"),
            *("consume", "async", "--limit", "3", "--time-limit", "60"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert consumed.returncode == 0, consumed.stderr
    handled = (tmp_path / "handled.txt").read_text(encoding="utf-8").split()
    assert sorted(handled) == ["0", "1", "2"], consumed.stderr
    assert "parked" not in consumed.stderr.replace("0 parked", "")
