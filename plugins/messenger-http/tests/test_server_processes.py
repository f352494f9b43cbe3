"""``messenger serve-http`` as a real process on a free port, driven with httpx.

Each test gets its own world (see ``http_support.World``): SQLite queues in ``tmp_path``, or
streams of its own on the test Redis. The server's time limit is the default (2 s).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from http_app import Broken, Ping, Slow
from http_support import DEADLINE, TOKEN, Server, World, redis_client, wait_for

pytestmark = pytest.mark.slow

TIME_LIMIT = 2.0
"""The default: the tests about the time limit run with it."""
SHORT = ("--time-limit", "0.5")
"""The others consume for half a second, to keep the suite quick."""


def drain(server: Server) -> tuple[int, int]:
    """POST /consume until a call handles nothing; the handled and failed totals."""
    handled = failed = 0
    for _ in range(20):
        response = server.consume()
        assert response.status_code == 200, response.text
        body = response.json()
        handled += body["handledMessages"]
        failed += body["failedMessages"]
        if body["handledMessages"] == 0 and body["failedMessages"] == 0:
            return handled, failed
    pytest.fail("the queue never emptied")


def test_the_counts_match_what_was_dispatched(world: World) -> None:
    server = world.serve(*SHORT)
    ids = [f"p{i}" for i in range(7)]
    world.dispatch(*(Ping(id) for id in ids), Broken("b1"))
    with server.client() as client:
        stats = client.get("/stats").json()
    assert stats["transports"]["async"] == {"count": 8, "failureTransport": False}
    assert stats["transports"]["failed"] == {"count": 0, "failureTransport": True}

    assert drain(server) == (7, 1)

    assert sorted(world.events("handled")) == ids
    assert world.events("attempt") == ["b1"]
    # The real worker ran: with no retries left, the broken one went to the failure transport.
    with server.client() as client:
        stats = client.get("/stats").json()
    assert stats["transports"]["async"]["count"] == 0
    assert stats["transports"]["failed"] == {"count": 1, "failureTransport": True}
    # Consuming ran in a worker thread, never on the event loop.
    assert sorted(world.events("worker-thread")) == ids


def test_concurrent_requests_for_one_receiver_give_one_200_and_409s(world: World) -> None:
    server = world.serve(*SHORT)
    world.dispatch(Slow("s1", 1.0))
    start = threading.Barrier(6)

    def call(_: int) -> httpx.Response:
        with server.client() as client:
            start.wait()
            return client.post("/consume", json={"receiver": "async"})

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(call, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409], [r.text for r in responses]
    (ok,) = [r for r in responses if r.status_code == 200]
    assert ok.json()["handledMessages"] == 1
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["receiver"] == "async"
    assert "being consumed already" in conflict["error"]


def test_the_lock_holds_across_processes(world: World) -> None:
    first = world.serve(*SHORT)
    second = world.serve(*SHORT)
    world.dispatch(Slow("s1", 1.5))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.consume)
        wait_for(lambda: world.events("started"), "the slow message to start")
        busy = second.consume()
        assert busy.status_code == 409, busy.text
        assert "another process" in busy.json()["error"]
        assert running.result(DEADLINE).json()["handledMessages"] == 1
    # Released: the other process may consume now.
    after = second.consume()
    assert after.status_code == 200
    assert after.json()["handledMessages"] == 0


def test_an_empty_queue_returns_within_a_fraction_of_the_time_limit(world: World) -> None:
    server = world.serve()
    with server.client() as client:
        client.post("/consume", json={"receiver": "async"})  # set up, connect
        took = []
        for _ in range(3):
            started = time.monotonic()
            response = client.post("/consume", json={"receiver": "async"})
            took.append(time.monotonic() - started)
            assert response.json() == {
                "handledMessages": 0,
                "failedMessages": 0,
                "stopReason": "no message was waiting",
            }
    assert min(took) < TIME_LIMIT / 4, took


def test_a_slow_handler_is_not_cut_off_mid_message(sqlite_world: World) -> None:
    world = sqlite_world
    server = world.serve()
    world.dispatch(Slow("slow", TIME_LIMIT + 0.5), Ping("after"))
    started = time.monotonic()
    response = server.consume()
    took = time.monotonic() - started
    body = response.json()
    # It outlived the time limit: finished and acknowledged, then the limit stopped the worker.
    assert body["handledMessages"] == 1
    assert body["stopReason"] == f"time limit of {TIME_LIMIT:g}s reached"
    assert took >= TIME_LIMIT + 0.5
    assert world.events("handled") == ["slow"]
    assert world.count("async") == 1  # the Ping waits for the next call


def test_sigterm_during_a_consume_finishes_the_current_message(sqlite_world: World) -> None:
    world = sqlite_world
    server = world.serve(*SHORT)
    world.dispatch(Slow("slow", 1.0), Ping("next"))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(server.consume)
        wait_for(lambda: world.events("started"), "the slow message to start")
        server.signal(signal.SIGTERM)
        response = running.result(DEADLINE)
    assert response.status_code == 200
    assert response.json()["handledMessages"] == 1
    assert response.json()["stopReason"] == "the endpoint is shutting down"
    assert server.wait() == 0, server.output()
    assert world.events("handled") == ["slow"]
    assert world.count("async") == 1  # acknowledged; the next one was not taken


def test_no_token_or_a_wrong_one_is_401_and_tokens_stay_out_of_the_logs(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    server = world.serve("-v", *SHORT)  # -v: access log and one line per consume, the most output
    wrong = "wrong-token-" + "x" * 20
    with httpx.Client(base_url=server.url, timeout=DEADLINE) as client:
        attempts = [
            client.post("/consume", json={"receiver": "async"}),
            client.post(
                "/consume",
                json={"receiver": "async"},
                headers={"Authorization": f"Bearer {wrong}"},
            ),
            client.post("/consume", json={"receiver": "async"}, headers={"Authorization": TOKEN}),
            client.post(
                "/consume",
                json={"receiver": "async"},
                headers={"Authorization": f"Basic {TOKEN}"},
            ),
            client.get("/stats"),
            client.get("/stats", headers={"Authorization": f"Bearer {wrong}"}),
        ]
        for response in attempts:
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json() == {"error": "missing or wrong bearer token"}
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/openapi.json").status_code == 200
        ok = client.post(
            "/consume", json={"receiver": "async"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    output = server.output()
    assert "POST /consume" in output  # the access log was on
    assert TOKEN not in output
    assert wrong not in output


def test_a_missing_or_unknown_receiver_is_400_naming_the_known_ones(
    sqlite_world: World,
) -> None:
    server = sqlite_world.serve(*SHORT)
    with server.client() as client:
        for body in ({}, {"receiver": "nope"}, {"receiver": 3}, {"receiver": "failed"}):
            response = client.post("/consume", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["receivers"] == ["async"]
            assert "async" in response.json()["error"]
        assert (
            "unknown receiver 'nope'"
            in client.post("/consume", json={"receiver": "nope"}).json()["error"]
        )
        assert client.post("/consume", content=b"{not json").status_code == 400
        assert client.post("/consume", content=b"x" * 10_000).status_code == 413
        assert client.get("/consume").status_code == 405


def test_serve_http_refuses_to_start_without_a_token(sqlite_world: World) -> None:
    world = sqlite_world
    env = {k: v for k, v in world.env.items() if k != "MESSENGER_HTTP_TOKEN"}
    done = world.run("serve-http", "--port", "0", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MESSENGER_HTTP_TOKEN" in done.stderr
    assert "--behind-authentication" in done.stderr

    short = "short-secret"
    done = world.run("serve-http", "--port", "0", env={**env, "MESSENGER_HTTP_TOKEN": short})
    assert done.returncode == 2
    assert "at least 16 characters" in done.stderr
    assert short not in done.stderr + done.stdout


def test_serve_http_behind_authentication_serves_without_a_token(sqlite_world: World) -> None:
    world = sqlite_world
    env = {k: v for k, v in world.env.items() if k != "MESSENGER_HTTP_TOKEN"}
    server = world.serve("--behind-authentication", *SHORT, env=env)
    assert "no token (--behind-authentication)" in server.output()
    world.dispatch(Ping("p"))
    assert server.consume(token=False).json()["handledMessages"] == 1


def test_a_stopped_server_closes_its_transports(redis_world: World) -> None:
    world = redis_world
    server = world.serve(*SHORT)
    world.dispatch(Ping("p"))
    assert server.consume().json()["handledMessages"] == 1
    client = redis_client()
    consumers = client.xinfo_consumers(world.stream, "http-tests")
    assert consumers  # the server's receiver joined the group
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    # Closed: a transport with a generated consumer name leaves the group when closed.
    assert client.xinfo_consumers(world.stream, "http-tests") == []
    client.close()
