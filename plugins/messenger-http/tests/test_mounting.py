"""The ASGI app mounted under a prefix in Starlette and FastAPI, and the WSGI adapter in Flask,
each driven by its framework's test client; and the app's settings.

The application here keeps its messages in ``memory://`` transports of this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from fastapi import FastAPI
from flask import Flask
from messenger_http import create_app, create_wsgi_app
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from messenger_core import Messenger, hookimpl
from messenger_core.errors import ConfigurationError

TOKEN = "mounting-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@attrs.frozen
class Job:
    id: int


class Shop:
    """An application with memory:// transports and a handler recording where it ran."""

    def __init__(self, **plugin_options: Any) -> None:
        config: dict[str, Any] = {
            "failure_transport": "failed",
            "transports": {"async": "memory://", "failed": "memory://"},
        }
        if plugin_options:
            config["plugins"] = {"http": plugin_options}
        self.messenger = Messenger(config=config)
        self.messenger.route(Job, "async")
        self.handled: list[int] = []
        self.threads: list[str] = []

        @self.messenger.handler
        def on_job(message: Job) -> None:
            self.threads.append(threading.current_thread().name)
            self.handled.append(message.id)

    def dispatch(self, count: int) -> None:
        for number in range(count):
            self.messenger.bus.dispatch(Job(number))


@pytest.fixture
def shop() -> Iterator[Shop]:
    made = Shop()
    yield made
    made.messenger.close()


def test_mounted_under_a_prefix_in_starlette(shop: Shop) -> None:
    http_app = create_app(shop.messenger, token=TOKEN, time_limit=0.3)
    host = Starlette(routes=[Mount("/ops/messenger", app=http_app)])
    shop.dispatch(3)
    with TestClient(host) as client:
        response = client.post("/ops/messenger/consume", json={"receiver": "async"}, headers=AUTH)
        assert response.status_code == 200
        assert response.json()["handledMessages"] == 3
        stats = client.get("/ops/messenger/stats", headers=AUTH).json()
        assert stats["transports"]["async"] == {"count": 0, "failureTransport": False}
        assert client.get("/ops/messenger/health").json() == {"status": "ok"}
        document = client.get("/ops/messenger/openapi.json").json()
        assert document["servers"] == [{"url": "/ops/messenger"}]
        assert set(document["paths"]) == {"/consume", "/stats", "/health"}
        assert client.post("/ops/messenger/consume", json={"receiver": "async"}).status_code == 401
    assert shop.handled == [0, 1, 2]
    # Consuming ran in a worker thread (the test client's event loop runs in another one).
    assert all(name != threading.main_thread().name for name in shop.threads)
    http_app.close()


def test_mounted_under_a_prefix_in_fastapi(shop: Shop) -> None:
    host = FastAPI()

    @host.get("/")
    def home() -> dict[str, str]:
        return {"shop": "open"}

    http_app = create_app(shop.messenger, token=TOKEN, time_limit=0.3)
    host.mount("/queue", http_app)
    shop.dispatch(2)
    with TestClient(host) as client:
        assert client.get("/").json() == {"shop": "open"}
        response = client.post("/queue/consume", json={"receiver": "async"}, headers=AUTH)
        assert response.json()["handledMessages"] == 2
        unknown = client.post("/queue/consume", json={"receiver": "nope"}, headers=AUTH)
        assert unknown.status_code == 400
        assert unknown.json()["receivers"] == ["async"]
    http_app.close()


def test_the_wsgi_adapter_in_flask(shop: Shop) -> None:
    flask_app = Flask("shop")

    @flask_app.get("/")
    def home() -> str:
        return "shop"

    wsgi_app = create_wsgi_app(shop.messenger, token=TOKEN, time_limit=0.3)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/messenger": wsgi_app}
    )
    shop.dispatch(4)
    client = flask_app.test_client()
    assert client.get("/").text == "shop"
    response = client.post("/messenger/consume", json={"receiver": "async"}, headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["handledMessages"] == 4
    assert client.post("/messenger/consume", json={"receiver": "async"}).status_code == 401
    assert client.get("/messenger/stats", headers=AUTH).get_json()["transports"]["async"] == {
        "count": 0,
        "failureTransport": False,
    }
    assert client.get("/messenger/openapi.json").get_json()["servers"] == [{"url": "/messenger"}]
    assert shop.handled == [0, 1, 2, 3]
    wsgi_app.http_app.close()


def test_an_empty_receiver_returns_at_once(shop: Shop) -> None:
    http_app = create_app(shop.messenger, token=TOKEN)  # the default time limit, 2 s
    with TestClient(http_app) as client:
        started = time.monotonic()
        response = client.post("/consume", json={"receiver": "async"}, headers=AUTH)
        took = time.monotonic() - started
    assert response.json() == {
        "handledMessages": 0,
        "failedMessages": 0,
        "stopReason": "no message was waiting",
    }
    assert took < 0.5


def test_the_memory_limit_stops_a_consume_after_its_current_message(shop: Shop) -> None:
    http_app = create_app(shop.messenger, token=TOKEN, memory_limit=1024)  # long reached
    shop.dispatch(3)
    with TestClient(http_app) as client:
        body = client.post("/consume", json={"receiver": "async"}, headers=AUTH).json()
    assert body["handledMessages"] == 1
    assert body["stopReason"].startswith("memory limit of 1024 bytes reached")


def test_stopping_answers_503_and_health_turns_503(shop: Shop) -> None:
    http_app = create_app(shop.messenger, token=TOKEN)
    with TestClient(http_app) as client:
        http_app.stop()
        assert client.get("/health").status_code == 503
        response = client.post("/consume", json={"receiver": "async"}, headers=AUTH)
        assert response.status_code == 503


def test_the_app_refuses_to_be_built_without_a_token(shop: Shop) -> None:
    with pytest.raises(ConfigurationError, match="MESSENGER_HTTP_TOKEN"):
        create_app(shop.messenger, environ={})
    short = "tiny-secret"
    with pytest.raises(ConfigurationError, match="at least 16 characters") as raised:
        create_app(shop.messenger, token=short, environ={})
    assert short not in str(raised.value)


def test_behind_authentication_serves_without_a_token(shop: Shop) -> None:
    http_app = create_app(shop.messenger, behind_authentication=True, environ={}, time_limit=0.3)
    shop.dispatch(1)
    with TestClient(http_app) as client:
        response = client.post("/consume", json={"receiver": "async"})
        assert response.json()["handledMessages"] == 1
        assert "components" not in client.get("/openapi.json").json()


def test_the_token_comes_from_the_environment_or_the_configuration() -> None:
    shop = Shop(token="configured-token-0123456789", receivers=["async"], time_limit=0.3)
    shop.dispatch(1)
    http_app = create_app(shop.messenger, environ={"MESSENGER_HTTP_TOKEN": TOKEN})
    with TestClient(http_app) as client:
        configured = {"Authorization": "Bearer configured-token-0123456789"}
        assert client.get("/stats", headers=AUTH).status_code == 401  # the table's token wins
        assert client.get("/stats", headers=configured).status_code == 200
    from_env = create_app(Shop().messenger, environ={"MESSENGER_HTTP_TOKEN": TOKEN})
    with TestClient(from_env) as client:
        assert client.get("/stats", headers=AUTH).status_code == 200
    assert repr(http_app.consumer.settings).count("configured-token") == 0
    shop.messenger.close()


def test_an_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'time_limt'"):
        create_app(Shop(time_limt=3).messenger, token=TOKEN)


class Recorder:
    """A plugin recording the worker events of HTTP consumes."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def messenger_message_handled(self, envelope: Any, transport_name: str) -> None:
        self.events.append(f"handled {envelope.message.id} from {transport_name}")

    @hookimpl
    def messenger_message_retried(
        self, envelope: Any, transport_name: str, retry_count: int
    ) -> None:
        self.events.append(f"retried {envelope.message.id} ({retry_count})")


def test_the_real_worker_runs_hooks_retries_and_the_failure_transport() -> None:
    messenger = Messenger(
        config={
            "failure_transport": "failed",
            "transports": {
                "async": {"dsn": "memory://", "retry_strategy": {"max_retries": 1, "delay": 0}},
                "failed": "memory://",
            },
        }
    )
    messenger.route(Job, "async")
    recorder = Recorder()
    messenger.hooks.register(recorder)

    @messenger.handler
    def on_job(message: Job) -> None:
        if message.id == 13:
            raise RuntimeError("unlucky")

    messenger.bus.dispatch(Job(1))
    messenger.bus.dispatch(Job(13))
    http_app = create_app(messenger, token=TOKEN, time_limit=0.5)
    with TestClient(http_app) as client:
        body = client.post("/consume", json={"receiver": "async"}, headers=AUTH).json()
        stats = client.get("/stats", headers=AUTH).json()["transports"]
    assert (body["handledMessages"], body["failedMessages"]) == (1, 2)  # 13: tried, retried
    assert recorder.events == ["handled 1 from async", "retried 13 (1)"]
    assert stats == {
        "async": {"count": 0, "failureTransport": False},
        "failed": {"count": 1, "failureTransport": True},
    }
    http_app.close()
    messenger.close()


def test_an_unreachable_store_is_503_without_its_address(caplog: pytest.LogCaptureFixture) -> None:
    messenger = Messenger(
        config={
            "transports": {
                "async": {
                    "dsn": "redis://:secret-password@127.0.0.1:1",
                    "options": {"reconnect_timeout": 0.2},
                }
            }
        }
    )
    http_app = create_app(messenger, token=TOKEN)
    with TestClient(http_app) as client:
        response = client.post("/consume", json={"receiver": "async"}, headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": "the lock of receiver 'async' cannot be taken"}
    assert "could not take Redis key 'messenger:http-consume:messages:symfony'" in caplog.text
    assert "secret-password" not in caplog.text
    http_app.close()
    messenger.close()
