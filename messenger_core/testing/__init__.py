"""Test helpers for applications and plugins (needs pytest).

:class:`TransportContract` is the contract suite every transport passes; see
:mod:`messenger_core.testing.contract` for how a transport's tests use it.
:mod:`messenger_core.testing.cutting_proxy` is a TCP proxy that loses a connection at a
chosen command (a Redis ``EXEC``, a SQL ``COMMIT``), for tests of lost replies.
"""

from __future__ import annotations

import pytest

# Plain asserts in the suite should explain themselves like the tests' own asserts do; this
# only works if registered before the module is imported.
pytest.register_assert_rewrite(
    "messenger_core.testing.contract",
    "messenger_core.testing._contract_support",
    "messenger_core.testing._contract_basic",
    "messenger_core.testing._contract_delays",
    "messenger_core.testing._contract_listing",
    "messenger_core.testing._contract_redelivery",
    "messenger_core.testing._contract_restart",
)

from messenger_core.testing.contract import (  # noqa: E402
    POISON_BODY,
    ContractMessage,
    PoisonInjectingSerializer,
    PoisonMessage,
    TransportContract,
    TransportPool,
    make_contract_serializer,
    restart_test_only,
)

__all__ = [
    "POISON_BODY",
    "ContractMessage",
    "PoisonInjectingSerializer",
    "PoisonMessage",
    "TransportContract",
    "TransportPool",
    "make_contract_serializer",
    "restart_test_only",
]
