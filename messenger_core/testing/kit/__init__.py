"""The testing kit for applications: in-memory transports, assertions and a real worker.

Used through the pytest fixture ``messenger_test`` (see
:mod:`messenger_core.testing.pytest_plugin`), or directly::

    with MessengerTest(app) as test:
        app.bus.dispatch(OrderPlaced(order_id=1))
        test.queue("async").assert_count(1).assert_contains(OrderPlaced)
        test.process_all()
        test.queue("async").acknowledged.assert_contains(OrderPlaced)
"""

from __future__ import annotations

from messenger_core.testing.kit.messages import Messages, QueueView
from messenger_core.testing.kit.session import MessengerTest, ProcessingError
from messenger_core.testing.kit.transport import RecordingTransport

__all__ = ["Messages", "MessengerTest", "ProcessingError", "QueueView", "RecordingTransport"]
