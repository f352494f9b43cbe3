"""The transport contract suite: the tests every transport, core or plugin, must pass.

A transport's test module subclasses :class:`TransportContract` and provides one fixture,
``make_transport``; the suite then runs every test that the transport's declared
:class:`~messenger_core.transport.TransportCapabilities` call for, and skips the others with
the reason "transport does not declare <flag>"::

    from collections.abc import Mapping
    from typing import Any, ClassVar

    import pytest

    from messenger_core.dsn import Dsn
    from messenger_core.testing import TransportContract
    from messenger_transport_sql import SqlTransportFactory  # the transport under test

    class TestSqliteTransport(TransportContract):
        # Options that make an abandoned message come back soon, how long to wait for it,
        # and how long to poll get() for a message that should arrive.
        redelivery_options: ClassVar[Mapping[str, Any]] = {"redeliver_timeout": 1}
        redelivery_wait = 5.0
        receive_timeout = 5.0

        @pytest.fixture
        def make_transport(self, contract_serializer, tmp_path):
            dsn = Dsn.parse(f"sqlite:///{tmp_path / 'queue.db'}?queue_name=contract")

            def make(**options):
                return SqlTransportFactory().create(dsn, options, contract_serializer)

            return make

``make_transport`` returns a callable taking transport options as keyword arguments (they
override the defaults). Every call must build a *new* transport object, with its own
connection, over the *same* queue, and that queue must be fresh (empty) for each test: the
suite uses several such objects as separate consumers (to model a consumer that died, or
consumers in several threads). Transports must use ``contract_serializer``, a JSON serializer
that knows the suite's messages and turns a :class:`PoisonMessage` into a body it cannot
decode. The suite closes every transport it made; ``setup()`` is called on the first one
when the transport declares ``setup``. A transport needing a service (a database, a broker)
should skip (or fail, under ``MESSENGER_REQUIRE_SERVICES=1``) inside ``make_transport`` with
:func:`messenger_core.testing.services.require_service`.

A transport that keeps message objects in memory instead of serializing them (the memory
transport without ``serialize``) sets ``serializes_messages = False``: poison messages cannot
happen there and the poison test is skipped.

The broker-restart test (the idea of Watermill's ``RestartServiceCommand``) needs a way to
restart the transport's server. A subclass whose transports talk to a server the tests started
themselves (on a spare port: never restart a shared service) overrides the fixture
``restart_service`` to return a callable ``restart(downtime)`` that stops the server, waits
``downtime`` seconds and starts it again, returning once it accepts connections. The default
fixture returns ``None`` and the test is skipped ("the transport's tests give no way to restart
its server"). The test sends messages, restarts the server while a consumer keeps calling
``get()`` and ``ack()`` in a thread, and asserts that no call raised, every message arrived
(at least once: one whose acknowledgement was lost with the connection may come again) and
the consumer still receives new messages afterwards.

Run the suite with pytest as usual; each test's name says which promise it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import pytest

from messenger_core.serializer import Serializer
from messenger_core.testing._contract_basic import BasicContract
from messenger_core.testing._contract_delays import DelayContract
from messenger_core.testing._contract_listing import ListingContract
from messenger_core.testing._contract_redelivery import RedeliveryContract
from messenger_core.testing._contract_restart import RestartContract
from messenger_core.testing._contract_support import (
    POISON_BODY,
    ContractMessage,
    PoisonInjectingSerializer,
    PoisonMessage,
    TransportPool,
    make_contract_serializer,
)
from messenger_core.transport import SetupableTransport, Transport

__all__ = [
    "POISON_BODY",
    "ContractMessage",
    "PoisonMessage",
    "PoisonInjectingSerializer",
    "TransportContract",
    "TransportPool",
    "make_contract_serializer",
    "restart_test_only",
]

C = TypeVar("C", bound=type)


# pytest collects a base class's tests before its subclass's, in reverse MRO order: the parts
# are listed last first so the tests run basic ones first, as they always did.
class TransportContract(
    RestartContract, RedeliveryContract, ListingContract, DelayContract, BasicContract
):
    """Base class of a transport's contract tests; see the module documentation.

    Subclasses provide the ``make_transport`` fixture and may override the class variables.
    """

    redelivery_options: ClassVar[Mapping[str, Any]] = {}
    """Options that make a message whose consumer died come back soon."""
    redelivery_wait: ClassVar[float] = 5.0
    """Maximum seconds to wait for that redelivery."""
    receive_timeout: ClassVar[float] = 5.0
    """Maximum seconds the tests poll ``get()`` for a message that should arrive."""
    serializes_messages: ClassVar[bool] = True
    """Whether messages go through the serializer (false only for in-process storage)."""
    restart_wait: ClassVar[float] = 60.0
    """Maximum seconds the broker-restart test waits for every message after the restart."""

    # -- fixtures --------------------------------------------------------------------------
    @pytest.fixture
    def contract_serializer(self) -> Serializer:
        """The serializer transports under test use: see :func:`make_contract_serializer`."""
        return make_contract_serializer()

    @pytest.fixture
    def contract_transports(
        self, make_transport: Callable[..., Transport]
    ) -> Iterator[TransportPool]:
        """Every transport a test builds, closed when it ends."""
        pool = TransportPool(make_transport)
        yield pool
        pool.close_all()

    @pytest.fixture
    def restart_service(self) -> Callable[[float], None] | None:
        """How to restart the server the transports talk to: a callable taking the downtime
        in seconds (stop, wait, start, return once it accepts connections), or ``None`` when
        the tests cannot restart it (the default: the broker-restart test is skipped)."""
        return None

    @pytest.fixture
    def transport(self, contract_transports: TransportPool) -> Transport:
        """A transport with default options, set up if it can be."""
        transport = contract_transports.new()
        if type(transport).capabilities.setup:
            assert isinstance(transport, SetupableTransport)
            transport.setup()
        return transport


def restart_test_only(cls: C) -> C:
    """Class decorator: hide every test ``cls`` inherits from :class:`TransportContract` but
    the broker-restart one.

    For a contract class on a server of the tests' own, which the restart test stops and
    starts, while the rest of the contract runs on the shared server."""
    keep = RestartContract.test_a_consumer_carries_on_after_the_server_restarts.__name__
    for name in dir(cls):
        if name.startswith("test_") and name != keep:
            setattr(cls, name, None)
    return cls
