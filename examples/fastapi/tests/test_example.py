"""The FastAPI example against a real uvicorn server, and a real worker consuming its orders.

Needs fastapi, uvicorn and httpx (the ``fastapi-example`` tox environment installs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from messenger_core.testing.services import free_port

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

EXAMPLE = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "messenger.toml"
    config.write_text(
        "[messenger]\n"
        'app = "orders.app:messenger"\n'
        "[messenger.transports.orders]\n"
        f'dsn = "sqlite:///{tmp_path / "orders.db"}?queue_name=orders"\n'
        "[messenger.routing]\n"
        '"orders.messages.PlaceOrder" = "orders"\n'
    )
    return dict(
        os.environ,
        ORDERS_CONFIG=str(config),
        ORDERS_PLACED_LOG=str(tmp_path / "placed.jsonl"),
        MESSENGER_STOP_SIGNAL_FILE=str(tmp_path / "stop-workers"),
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )


@pytest.fixture
def server(environment: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "orders.app:api", "--port", str(port)],
        cwd=EXAMPLE,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            httpx.get(f"{url}/stock/apple", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail((tmp_path / "uvicorn.log").read_text())
            time.sleep(0.1)
    yield url
    process.send_signal(signal.SIGTERM)
    # Recent uvicorn raises the signal again once it shut down cleanly: -SIGTERM is fine.
    assert process.wait(timeout=DEADLINE) in (0, -signal.SIGTERM)
    log.close()
    assert "Application shutdown complete" in (tmp_path / "uvicorn.log").read_text()


def test_routes_dispatch_and_a_worker_handles_the_orders(
    server: str, environment: dict[str, str], tmp_path: Path
) -> None:
    async def place_orders() -> list[dict[str, object]]:
        async with httpx.AsyncClient(base_url=server, timeout=DEADLINE) as client:
            replies = await asyncio.gather(
                *(client.post("/orders", json={"sku": "apple"}) for _ in range(20))
            )
            assert [reply.status_code for reply in replies] == [202] * 20
            refused = await client.post("/orders", json={"sku": "pear"})
            assert refused.status_code == 409
            assert (await client.get("/stock/apple")).json() == {"apple": 12}
            return [reply.json() for reply in replies]

    orders = asyncio.run(place_orders())
    assert {order["status"] for order in orders} == {"queued"}

    command = [sys.executable, "-m", "messenger_core", "consume", "orders", "--limit", "20"]
    worker = subprocess.run(
        [*command, "--concurrency", "8", "--sleep", "0.05", "--time-limit", str(DEADLINE)],
        check=False,
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
    )
    assert worker.returncode == 0, worker.stderr
    placed = [json.loads(line) for line in (tmp_path / "placed.jsonl").read_text().splitlines()]
    assert sorted(p["order_id"] for p in placed) == sorted(str(o["order_id"]) for o in orders)
