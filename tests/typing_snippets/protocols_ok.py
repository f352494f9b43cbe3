"""``mypy --strict`` must accept each built-in as the optional-capability Protocol it implements."""

from __future__ import annotations

from messenger_core import Messenger
from messenger_core.middleware import BareDispatchAware, BindableMiddleware, StampWrappingMiddleware
from messenger_core.middleware.add_bus_name import AddBusNameStampMiddleware
from messenger_core.middleware.dispatch_after_current_bus import DispatchAfterCurrentBusMiddleware
from messenger_core.middleware.failed_message_processing import FailedMessageProcessingMiddleware
from messenger_core.middleware.handle import HandleMessageMiddleware
from messenger_core.middleware.reject_redelivered import RejectRedeliveredMessageMiddleware
from messenger_core.middleware.send import SendMessageMiddleware
from messenger_core.transport import ApplicationBoundFactory
from messenger_core.transports.sync import SyncTransportFactory

messenger = Messenger(autoload=False)

bindable: list[BindableMiddleware] = [
    AddBusNameStampMiddleware("bus"),
    RejectRedeliveredMessageMiddleware(),
    DispatchAfterCurrentBusMiddleware(),
    FailedMessageProcessingMiddleware(),
    SendMessageMiddleware(messenger.router, messenger.get_transport),
    HandleMessageMiddleware("bus", messenger.handlers),
]
wrapping: StampWrappingMiddleware = AddBusNameStampMiddleware("bus")
bare: list[BareDispatchAware] = [
    AddBusNameStampMiddleware("bus"),
    RejectRedeliveredMessageMiddleware(),
    FailedMessageProcessingMiddleware(),
]
bound: ApplicationBoundFactory = SyncTransportFactory()
