"""The loop client: ``messenger consume-http`` against a real ``serve-http``, and its pacing
(at once after handled messages, a pause when idle, backoff after errors)."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import httpx
import pytest
from http_app import Ping
from http_support import TOKEN, World
from messenger_http.client import ConsumeHttpError, ConsumeLoop

SHORT = ("--time-limit", "0.5")


@pytest.mark.slow
def test_consume_http_consumes_everything_through_a_real_server(sqlite_world: World) -> None:
    world = sqlite_world
    server = world.serve(*SHORT)
    ids = [f"p{i}" for i in range(5)]
    world.dispatch(*(Ping(id) for id in ids))
    client = world.start(
        "consume-http", server.url, "--receiver", "async", "--limit", "5", "--idle-pause", "0.2"
    )
    assert client.wait() == 0, client.output()
    assert sorted(world.events("handled")) == ids
    assert "limit of 5 messages reached" in client.output()
    assert TOKEN not in client.output() + server.output()


@pytest.mark.slow
def test_consume_http_stops_on_sigterm_while_idle(sqlite_world: World) -> None:
    world = sqlite_world
    server = world.serve(*SHORT)
    client = world.start("consume-http", server.url, "--receiver", "async", "--idle-pause", "60")
    client.wait_until(lambda: "consuming async through" in client.output(), "the client to start")
    time.sleep(0.5)  # its first call answered; it pauses now
    stopped = time.monotonic()
    client.signal(signal.SIGTERM)
    assert client.wait() == 0, client.output()
    assert time.monotonic() - stopped < 5
    assert "SIGTERM received" in client.output()


@pytest.mark.slow
def test_consume_http_stops_with_an_error_on_a_wrong_token(sqlite_world: World) -> None:
    world = sqlite_world
    server = world.serve(*SHORT)
    wrong = "not-the-token-0123456789"
    done = world.run(
        "consume-http",
        server.url,
        "--receiver",
        "async",
        env={**world.env, "MESSENGER_HTTP_TOKEN": wrong},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "answered 401: missing or wrong bearer token" in done.stderr
    assert wrong not in done.stdout + done.stderr
    done = world.run("consume-http", server.url, "--receiver", "nope")
    assert done.returncode == 1
    assert "answered 400: unknown receiver 'nope'" in done.stderr


def test_the_token_file_is_read(sqlite_world: World, tmp_path: Path) -> None:
    missing = sqlite_world.run(
        "consume-http", "http://127.0.0.1:9", "--receiver", "a", "--token-file", str(tmp_path / "x")
    )
    assert missing.returncode == 2
    assert "cannot read --token-file" in missing.stderr


def test_the_pace_after_handled_idle_busy_and_failed_calls() -> None:
    answers = [
        (200, {"handledMessages": 2}),  # again at once
        (200, {"handledMessages": 1}),  # again at once
        (200, {"handledMessages": 0}),  # idle pause
        (409, {"error": "busy"}),  # idle pause
        (503, {"error": "down"}),  # backoff 1x
        (503, {"error": "down"}),  # backoff 2x
        (200, {"handledMessages": 0}),  # idle pause, then stop
    ]
    times: list[float] = []
    loop: ConsumeLoop

    def respond(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.url.path == "/base/consume"
        times.append(time.monotonic())
        status, body = answers[len(times) - 1]
        if len(times) == len(answers):
            loop.stop("done")
        return httpx.Response(status, json=body)

    loop = ConsumeLoop(
        "http://endpoint/base",
        "async",
        token=TOKEN,
        idle_pause=0.6,
        backoff=0.3,
        client=httpx.Client(transport=httpx.MockTransport(respond)),
    )
    stats = loop.run()
    assert (stats.requests, stats.handled, stats.errors) == (7, 3, 2)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    expected = [0.0, 0.0, 0.6, 0.6, 0.3, 0.6]
    for gap, wanted in zip(gaps, expected, strict=True):
        assert wanted - 0.02 <= gap < wanted + 0.25, (gaps, expected)


def test_a_refusal_for_good_ends_the_loop() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "missing or wrong bearer token"})

    loop = ConsumeLoop(
        "http://endpoint", "async", client=httpx.Client(transport=httpx.MockTransport(respond))
    )
    with pytest.raises(ConsumeHttpError, match="401: missing or wrong bearer token"):
        loop.run()


def test_an_unreachable_server_is_retried_with_backoff() -> None:
    loop = ConsumeLoop("http://127.0.0.1:9", "async", backoff=0.05, max_backoff=0.2, time_limit=1)
    started = time.monotonic()
    stats = loop.run()
    assert 1 <= time.monotonic() - started < 3
    assert stats.errors == stats.requests >= 4
    assert stats.stop_reason == "time limit of 1s reached"
