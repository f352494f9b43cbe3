"""``PerEventLoop``: one client per running event loop, closed with its loop or on ``close()``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from messenger_core.async_clients import PerEventLoop


class Client:
    """Stands for an async client bound to the loop it was opened on."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.loop = asyncio.get_running_loop()
        self.closed_on: asyncio.AbstractEventLoop | None = None


class Clients:
    """Opens numbered clients (failing the first ``failures`` times) and records closings."""

    def __init__(self, failures: int = 0) -> None:
        self.opened: list[Client] = []
        self.failures = failures

    async def open(self) -> Client:
        await asyncio.sleep(0.01)  # concurrent callers arrive meanwhile
        if self.failures:
            self.failures -= 1
            raise ConnectionError("refused")
        client = Client(len(self.opened))
        self.opened.append(client)
        return client

    async def close(self, client: Client) -> None:
        await asyncio.sleep(0)
        client.closed_on = asyncio.get_running_loop()


def test_one_client_per_loop_shared_by_concurrent_callers_and_closed_with_its_loop() -> None:
    clients = Clients()
    per_loop = PerEventLoop(clients.open, clients.close)

    async def use() -> list[Client]:
        return list(await asyncio.gather(*(per_loop.get() for _ in range(10))))

    first = asyncio.run(use())
    assert {id(c) for c in first} == {id(clients.opened[0])}
    assert clients.opened[0].closed_on is clients.opened[0].loop  # on its own loop, at shutdown
    second = asyncio.run(use())
    assert second[0] is clients.opened[1]
    assert clients.opened[1].closed_on is clients.opened[1].loop
    assert len(clients.opened) == 2


def test_a_failed_opening_is_raised_and_tried_again_next_time() -> None:
    clients = Clients(failures=1)
    per_loop = PerEventLoop(clients.open, clients.close)

    async def use() -> Client:
        with pytest.raises(ConnectionError):
            await per_loop.get()
        return await per_loop.get()

    assert asyncio.run(use()) is clients.opened[0]


def test_close_closes_the_client_of_a_loop_running_in_another_thread() -> None:
    clients = Clients()
    per_loop = PerEventLoop(clients.open, clients.close)
    opened, release = threading.Event(), threading.Event()
    closed_while_running: list[bool] = []

    async def serve() -> None:
        client = await per_loop.get()
        opened.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        closed_while_running.append(client.closed_on is client.loop)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert opened.wait(5)
    per_loop.close()
    threading.Event().wait(0.2)
    release.set()
    thread.join(5)
    assert closed_while_running == [True]


def test_a_discarded_client_is_closed_and_replaced() -> None:
    clients = Clients()
    per_loop = PerEventLoop(clients.open, clients.close)

    async def use() -> tuple[Client, Client]:
        broken = await per_loop.get()
        per_loop.discard(broken)
        await asyncio.sleep(0.01)
        assert broken.closed_on is broken.loop
        return broken, await per_loop.get()

    broken, fresh = asyncio.run(use())
    assert fresh is not broken
    assert fresh is clients.opened[1]
