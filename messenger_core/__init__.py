"""messenger: a message bus for Python in the spirit of Symfony Messenger.

The names most applications need are importable from here; plugin authors find the transport
and serializer protocols in :mod:`messenger_core.transport` and :mod:`messenger_core.serializer`.
"""

from messenger_core import _version
from messenger_core.app import Messenger
from messenger_core.bus import DEFAULT_BUS, MessageBus, Query, QueryError
from messenger_core.config import MessengerConfig, load_config
from messenger_core.dsn import Dsn
from messenger_core.envelope import Envelope
from messenger_core.errors import (
    ConfigurationError,
    DelayedMessageHandlingError,
    HandlerFailedError,
    MessageDecodingError,
    MessengerError,
    NoHandlerForMessageError,
    RecoverableMessageError,
    RejectRedeliveredMessageError,
    TransportError,
    UnrecoverableMessageError,
)
from messenger_core.handlers import ANY_MESSAGE, handler
from messenger_core.hookspecs import hookimpl
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.stamps import (
    BusNameStamp,
    ConsumedByWorkerStamp,
    DelayStamp,
    DispatchAfterCurrentBusStamp,
    ErrorDetailsStamp,
    HandledStamp,
    NonSendableStamp,
    ReceivedStamp,
    RedeliveryStamp,
    SentStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportMessageIdStamp,
    TransportNamesStamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

__version__: str = _version.core_version()
"""This distribution's version (from its installed metadata; ``0+unknown`` from source)."""

__all__ = [
    "ANY_MESSAGE",
    "DEFAULT_BUS",
    "BusNameStamp",
    "ConfigurationError",
    "ConsumedByWorkerStamp",
    "DelayStamp",
    "DelayedMessageHandlingError",
    "DispatchAfterCurrentBusStamp",
    "Dsn",
    "Envelope",
    "ErrorDetailsStamp",
    "HandledStamp",
    "HandlerFailedError",
    "MessageBus",
    "MessageDecodingError",
    "MessageTypeRegistry",
    "Messenger",
    "MessengerConfig",
    "MessengerError",
    "NoHandlerForMessageError",
    "NonSendableStamp",
    "Query",
    "QueryError",
    "ReceivedStamp",
    "RecoverableMessageError",
    "RedeliveryStamp",
    "RejectRedeliveredMessageError",
    "SentStamp",
    "SentToFailureTransportStamp",
    "Stamp",
    "TransportError",
    "TransportMessage",
    "TransportMessageIdStamp",
    "TransportNamesStamp",
    "UndecodableMessage",
    "UnrecoverableMessageError",
    "__version__",
    "handler",
    "hookimpl",
    "load_config",
]
