"""The symfony serializer against the wire format Symfony Messenger 5.4 writes.

The ``SYMFONY_*`` headers below are what Symfony's own Serializer (with the normalizers
FrameworkBundle registers) wrote for an envelope holding every stamp it sends; the tests in
``tests/interop`` run real Symfony on the other side of real transports.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import attrs
import pytest
from messenger_serializer_symfony import (
    PYTHON_STAMP_HEADER_PREFIX,
    SymfonySerializer,
    SymfonySerializerFactory,
)

from messenger_core import Messenger
from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization.naming import wire_name
from messenger_core.serializer import decode_or_quarantine
from messenger_core.stamps import (
    BusNameStamp,
    DelayStamp,
    ErrorDetailsStamp,
    HandledByStamp,
    RedeliveryStamp,
    SentToFailureTransportStamp,
    Stamp,
    TransportNamesStamp,
    UnknownStampsStamp,
)
from messenger_core.transport import TransportMessage, UndecodableMessage

PREFIX = "X-Message-Stamp-Symfony\\Component\\Messenger\\Stamp\\"
PHP_CLASS = "App\\Message\\OrderPlaced"


@attrs.frozen
class OrderPlaced:
    order_id: str
    amount: int
    placed_at: datetime


@attrs.frozen(kw_only=True)
class TenantStamp(Stamp):
    tenant_id: str


SYMFONY_BODY = b'{"orderId":"o-1","amount":5,"placedAt":"2026-01-02T03:04:05+01:00"}'
SYMFONY_HEADERS = {
    "type": PHP_CLASS,
    PREFIX + "BusNameStamp": '[{"busName":"messenger.bus.default"}]',
    PREFIX + "DelayStamp": '[{"delay":1500}]',
    PREFIX + "RedeliveryStamp": '[{"retryCount":2,"exceptionMessage":null,'
    '"flattenException":null,"redeliveredAt":"2026-01-02T03:04:05+00:00"}]',
    PREFIX + "ErrorDetailsStamp": '[{"exceptionClass":"RuntimeException","exceptionCode":42,'
    '"exceptionMessage":"boom","flattenException":{"message":"boom","code":42,"headers":[],'
    '"class":"RuntimeException","file":"\\/srv\\/app.php","line":13,"previous":null,'
    '"status":500,"status_text":"Whoops, looks like something went wrong.","trace":[],'
    '"trace_as_string":"#0 {main}"}}]',
    PREFIX + "SentToFailureTransportStamp": '[{"originalReceiverName":"async"}]',
    PREFIX + "TransportMessageIdStamp": '[{"id":"17"}]',
    PREFIX + "HandledStamp": '[{"result":{"x":1},"handlerName":"App\\\\H::__invoke"}]',
    PREFIX + "ValidationStamp": '[{"groups":["a"]}]',
    "Content-Type": "application/json",
}


@pytest.fixture
def serializer() -> SymfonySerializer:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, PHP_CLASS)
    return SymfonySerializer(registry)


def test_reads_what_symfony_wrote(serializer: SymfonySerializer) -> None:
    envelope = serializer.decode(TransportMessage(SYMFONY_BODY, SYMFONY_HEADERS))

    assert envelope.message == OrderPlaced(
        "o-1", 5, datetime.fromisoformat("2026-01-02T03:04:05+01:00")
    )
    assert envelope.last(BusNameStamp) == BusNameStamp(bus_name="messenger.bus.default")
    assert envelope.last(DelayStamp) == DelayStamp(delay_ms=1500)
    assert envelope.last(RedeliveryStamp) == RedeliveryStamp(
        retry_count=2, redelivered_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert envelope.last(ErrorDetailsStamp) == ErrorDetailsStamp(
        exception_class="RuntimeException", message="boom", code=42, traceback="#0 {main}"
    )
    assert envelope.last(SentToFailureTransportStamp) == SentToFailureTransportStamp(
        original_receiver_name="async"
    )
    assert envelope.last(HandledByStamp) == HandledByStamp(handler_name="App\\H::__invoke")
    # A stamp the core does not know is kept as it was; the transport id of an earlier
    # delivery is dropped.
    assert envelope.last(UnknownStampsStamp) == UnknownStampsStamp(
        headers={PREFIX + "ValidationStamp": '[{"groups":["a"]}]'}
    )


def test_writes_what_symfony_reads(serializer: SymfonySerializer) -> None:
    envelope = serializer.decode(TransportMessage(SYMFONY_BODY, SYMFONY_HEADERS))

    encoded = serializer.encode(envelope)

    assert json.loads(encoded.body) == json.loads(SYMFONY_BODY)
    headers = dict(encoded.headers)
    assert headers.pop("type") == PHP_CLASS
    assert headers.pop("Content-Type") == "application/json"
    decoded = {name: json.loads(value) for name, value in headers.items()}
    assert decoded == {
        PREFIX + "BusNameStamp": [{"busName": "messenger.bus.default"}],
        PREFIX + "DelayStamp": [{"delay": 1500}],
        PREFIX + "RedeliveryStamp": [
            {"retryCount": 2, "redeliveredAt": "2026-01-02T03:04:05+00:00"}
        ],
        PREFIX + "ErrorDetailsStamp": [
            {
                "exceptionClass": "RuntimeException",
                "exceptionCode": 42,
                "exceptionMessage": "boom",
                "flattenException": {
                    "message": "boom",
                    "code": 42,
                    "headers": [],
                    "class": "RuntimeException",
                    "file": "",
                    "line": 0,
                    "previous": None,
                    "status": 500,
                    "status_text": "Whoops, looks like something went wrong.",
                    "trace": [],
                    "trace_as_string": "#0 {main}",
                },
            }
        ],
        PREFIX + "SentToFailureTransportStamp": [{"originalReceiverName": "async"}],
        PREFIX + "HandledStamp": [{"result": None, "handlerName": "App\\H::__invoke"}],
        PREFIX + "ValidationStamp": [{"groups": ["a"]}],
    }


def test_a_python_traceback_becomes_php_frames_innermost_first(
    serializer: SymfonySerializer,
) -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/srv/shop/worker.py", line 10, in handle\n'
        "    on_order(message)\n"
        '  File "/srv/shop/handlers.py", line 42, in on_order\n'
        "    raise KeyError(sku)\n"
        "KeyError: 'sku'\n"
    )
    stamp = ErrorDetailsStamp(exception_class="KeyError", message="'sku'", traceback=traceback)
    encoded = serializer.encode(Envelope(OrderPlaced("o", 1, datetime.now(UTC)), [stamp]))

    [error] = json.loads(encoded.headers[PREFIX + "ErrorDetailsStamp"])
    frames = error["flattenException"]["trace"]
    assert [(f["function"], f["file"], f["line"]) for f in frames] == [
        ("on_order", "/srv/shop/handlers.py", 42),
        ("handle", "/srv/shop/worker.py", 10),
    ]
    assert error["flattenException"]["trace_as_string"] == traceback


def test_a_naive_datetime_is_refused_when_sent(serializer: SymfonySerializer) -> None:
    with pytest.raises(ValueError, match="naive datetime 2026-01-01T12:00:00"):
        serializer.encode(Envelope(OrderPlaced("o", 1, datetime(2026, 1, 1, 12))))


def test_error_without_code_or_traceback_is_written_as_php_expects(
    serializer: SymfonySerializer,
) -> None:
    stamp = ErrorDetailsStamp(exception_class="builtins.KeyError", message="'sku'")
    encoded = serializer.encode(Envelope(OrderPlaced("o", 1, datetime.now(UTC)), [stamp]))

    [error] = json.loads(encoded.headers[PREFIX + "ErrorDetailsStamp"])
    # Symfony 6 and later type the code int|string: PHP's "no code" is 0.
    assert error == {
        "exceptionClass": "builtins.KeyError",
        "exceptionCode": 0,
        "exceptionMessage": "'sku'",
        "flattenException": None,
    }


def test_stamps_symfony_lacks_never_get_a_symfony_stamp_header(
    serializer: SymfonySerializer,
) -> None:
    envelope = Envelope(
        OrderPlaced("o", 1, datetime.now(UTC)),
        [TransportNamesStamp(transport_names=["audit"]), TenantStamp(tenant_id="t-1")],
    )

    encoded = serializer.encode(envelope)

    stamp_headers = [name for name in encoded.headers if name.startswith("X-Message-Stamp-")]
    assert stamp_headers == []
    python_headers = sorted(
        name for name in encoded.headers if name.startswith(PYTHON_STAMP_HEADER_PREFIX)
    )
    assert python_headers == [
        PYTHON_STAMP_HEADER_PREFIX + "messenger_core.stamps.TransportNamesStamp",
        PYTHON_STAMP_HEADER_PREFIX + f"{__name__}.TenantStamp",
    ]
    # ... and a Python worker reads them back.
    decoded = serializer.decode(encoded)
    assert decoded.last(TenantStamp) == TenantStamp(tenant_id="t-1")
    assert decoded.last(TransportNamesStamp) == TransportNamesStamp(transport_names=["audit"])


def test_a_stamp_registered_under_a_php_class_name_is_a_symfony_stamp_header() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, PHP_CLASS)
    registry.register_stamp(TenantStamp, "App\\Stamp\\TenantStamp")
    serializer = SymfonySerializer(registry)

    encoded = serializer.encode(
        Envelope(OrderPlaced("o", 1, datetime.now(UTC)), [TenantStamp(tenant_id="t-1")])
    )

    assert encoded.headers["X-Message-Stamp-App\\Stamp\\TenantStamp"] == '[{"tenant_id":"t-1"}]'
    assert serializer.decode(encoded).last(TenantStamp) == TenantStamp(tenant_id="t-1")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "not JSON"),
        ('{"busName": "x"}', "not a JSON array"),
        ('["x"]', "expected a JSON object"),
        ("[{}]", "busName: expected a string, got nothing"),
        ('[{"busName": 7}]', "busName: expected a string, got int"),
    ],
)
def test_a_malformed_symfony_stamp_header_is_a_clear_decoding_error(
    serializer: SymfonySerializer, value: str, reason: str
) -> None:
    headers = {"type": PHP_CLASS, PREFIX + "BusNameStamp": value}

    with pytest.raises(MessageDecodingError, match=reason) as raised:
        serializer.decode(TransportMessage(SYMFONY_BODY, headers))

    assert "BusNameStamp" in str(raised.value)


def test_an_undecodable_message_keeps_its_raw_form_and_gains_symfony_stamps(
    serializer: SymfonySerializer,
) -> None:
    raw = TransportMessage(b"\xff not json", {"type": PHP_CLASS, **_failure_headers()})
    envelope = decode_or_quarantine(serializer, raw)
    assert isinstance(envelope.message, UndecodableMessage)
    assert envelope.last(SentToFailureTransportStamp) is not None  # read by decode_stamps

    parked = serializer.encode(
        envelope.with_(RedeliveryStamp(retry_count=0, redelivered_at=datetime(2026, 1, 1)))
    )

    assert parked.body == b"\xff not json"
    assert parked.headers["type"] == PHP_CLASS
    assert json.loads(parked.headers[PREFIX + "RedeliveryStamp"]) == [
        {"retryCount": 0, "redeliveredAt": "2026-01-01T00:00:00+00:00"}
    ]
    assert not [name for name in parked.headers if name.startswith("X-Message-Stamp-messenger")]


def _failure_headers() -> dict[str, str]:
    return {PREFIX + "SentToFailureTransportStamp": '[{"originalReceiverName":"async"}]'}


def test_field_names_option_and_factory_errors() -> None:
    registry = MessageTypeRegistry()
    registry.register(OrderPlaced, PHP_CLASS)
    as_is = SymfonySerializerFactory()(registry, {"field_names": "as_is"})
    body = json.loads(as_is.encode(Envelope(OrderPlaced("o", 1, datetime.now(UTC)))).body)
    assert set(body) == {"order_id", "amount", "placed_at"}

    with pytest.raises(ConfigurationError, match="did you mean 'field_names'"):
        SymfonySerializerFactory()(registry, {"field_name": "as_is"})
    with pytest.raises(ConfigurationError, match="unknown field name style"):
        SymfonySerializerFactory()(registry, {"field_names": "snake"})


def test_a_per_field_rename_wins_over_camel_case() -> None:
    @attrs.frozen
    class Refund:
        order_id: str = attrs.field(metadata=wire_name("order"))
        refund_amount: int = 0

    registry = MessageTypeRegistry()
    registry.register(Refund, "App\\Message\\Refund")
    serializer = SymfonySerializer(registry)

    encoded = serializer.encode(Envelope(Refund("o-1", 3)))

    assert json.loads(encoded.body) == {"order": "o-1", "refundAmount": 3}
    assert serializer.decode(encoded).message == Refund("o-1", 3)


def test_found_by_name_through_its_entry_point() -> None:
    messenger = Messenger({"serializers": {"symfony": {"field_names": "as_is"}}})

    serializer = messenger.serializer("symfony")

    assert isinstance(serializer, SymfonySerializer)
