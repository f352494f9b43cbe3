"""The transport on every redis-py its pyproject.toml allows (``tox -e redis-lowest`` runs this
suite on the lowest, ``tox -e redis`` on the newest): the one place where versions differ."""

from __future__ import annotations

import inspect
import warnings

import redis
from messenger_transport_redis import _wire
from redis_test_support import Stream, order, receive


def test_the_pool_is_asked_for_a_connection_the_way_the_installed_redis_py_wants() -> None:
    # Before 5.3 get_connection() requires a command name; 5.3 made it optional and deprecated.
    parameters = inspect.signature(redis.ConnectionPool.get_connection).parameters
    command_name = parameters.get("command_name")
    required = command_name is not None and command_name.default is inspect.Parameter.empty
    assert _wire._NAMES_ITS_COMMAND is required


def test_sending_receiving_and_acknowledging_warn_of_nothing_deprecated(stream: Stream) -> None:
    transport = stream.transport()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        sent = transport.send(order(1, "hello"))
        [received] = receive(transport, 1)
        transport.ack(received)
        transport.flush()
    assert received.message == sent.message
    assert transport.message_count() == 0
