"""The Flask extension, through Flask's own test client and CLI runner."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

flask = pytest.importorskip("flask")

from messenger_core import Messenger  # noqa: E402
from messenger_core.contrib.flask import FlaskMessenger, current_messenger  # noqa: E402
from messenger_core.errors import ConfigurationError  # noqa: E402
from messenger_core.transports.memory import MemoryTransport  # noqa: E402


@attrs.frozen
class OrderPlaced:
    order_id: int


HANDLED: list[tuple[int, str]] = []


def handle_order(message: OrderPlaced) -> None:
    # Runs in the application context: the app's configuration is at hand.
    HANDLED.append((message.order_id, flask.current_app.config["SHOP_NAME"]))


def create_app(**settings: Any) -> Any:
    app = flask.Flask(__name__)
    app.config["SHOP_NAME"] = "corner shop"
    app.config["MESSENGER"] = {
        "transports": {"async": "memory://", "failed": "memory://"},
        "failure_transport": "failed",
        "routing": {OrderPlaced: "async"},
    }
    app.config.update(settings)
    ext = FlaskMessenger(app)
    ext.messenger.handler(handle_order)

    @app.post("/orders/<int:order_id>")
    def place(order_id: int) -> tuple[str, int]:
        ext.bus.dispatch(OrderPlaced(order_id))
        return "queued", 202

    return app


@pytest.fixture(autouse=True)
def _reset() -> None:
    HANDLED.clear()


def queue(app: Any, name: str = "async") -> MemoryTransport:
    transport = app.extensions["messenger"].get_transport(name)
    assert isinstance(transport, MemoryTransport)
    return transport


def test_a_view_dispatches_and_flask_messenger_consume_handles() -> None:
    app = create_app()
    client = app.test_client()

    response = client.post("/orders/7")

    assert response.status_code == 202
    assert [e.message for e in queue(app).sent] == [OrderPlaced(7)]
    assert HANDLED == []

    result = app.test_cli_runner().invoke(args=["messenger", "consume", "async", "--limit", "1"])

    assert result.exit_code == 0, result.output
    assert HANDLED == [(7, "corner shop")]
    assert len(queue(app).acknowledged) == 1


def test_flask_messenger_passes_every_command_and_its_exit_code() -> None:
    app = create_app()
    runner = app.test_cli_runner()

    stats = runner.invoke(args=["messenger", "stats", "--format", "json"])
    assert stats.exit_code == 0, stats.output
    assert '"async"' in stats.output

    wrong = runner.invoke(args=["messenger", "consume", "nowhere"])
    assert wrong.exit_code == 2
    helped = runner.invoke(args=["messenger", "--help"])
    assert helped.exit_code == 0
    assert "consume" in helped.output


def test_an_existing_messenger_and_init_app() -> None:
    messenger = Messenger()
    ext = FlaskMessenger(messenger=messenger)
    app = flask.Flask(__name__)
    assert ext.init_app(app) is messenger
    with app.app_context():
        assert current_messenger() is messenger
    assert ext.messenger is messenger


def test_configuration_mistakes_are_clear() -> None:
    with pytest.raises(ConfigurationError, match="give one of app, config, not several"):
        create_app(MESSENGER_APP="shop:messenger")
    with flask.Flask(__name__).app_context(), pytest.raises(ConfigurationError, match="init_app"):
        current_messenger()
