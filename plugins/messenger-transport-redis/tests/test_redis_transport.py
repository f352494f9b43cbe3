"""The Redis transport on a real Redis, beyond the contract suite: Symfony's layout on the wire,
own pending entries, claims, the delay queue, lost groups and scripts, counting and listing."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
from redis_test_support import Order, Stream, entry_id, make_serializer, order, receive

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, TransportError
from messenger_core.stamps import DelayStamp, TransportMessageIdStamp
from messenger_core.transport import UndecodableMessage


def ids(envelopes: list[Envelope]) -> list[int]:
    return [envelope.message.id for envelope in envelopes]


def wait_until(condition: object, timeout: float = 5.0) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def pending_count(client: Any, stream: Stream, group: str = "symfony") -> int:
    return int(client.xpending(stream.name, group)["pending"])


# -- Symfony's layout ----------------------------------------------------------------------------
def test_an_entry_has_one_message_field_holding_body_and_headers(
    stream: Stream, redis_client: Any
) -> None:
    sent = stream.transport().send(order(1, "hello"))
    [(raw_id, fields)] = redis_client.xrange(stream.name)
    assert raw_id.decode() == entry_id(sent)
    assert list(fields) == [b"message"]
    document = json.loads(fields[b"message"])
    assert set(document) == {"body", "headers"}
    assert json.loads(document["body"]) == {"id": 1, "text": "hello"}
    assert document["headers"]["type"] == "tests.Order"


def test_a_delayed_message_waits_in_the_queue_scored_in_epoch_milliseconds(
    stream: Stream, redis_client: Any
) -> None:
    before = time.time() * 1000
    sent = stream.transport().send(order(1, "later", DelayStamp(delay_ms=60_000)))
    after = time.time() * 1000
    assert sent.last(TransportMessageIdStamp) is None
    assert redis_client.xlen(stream.name) == 0
    [(member, score)] = redis_client.zrange(stream.queue, 0, -1, withscores=True)
    assert before + 60_000 <= score <= after + 60_000
    document = json.loads(member)
    assert set(document) == {"body", "headers", "uniqid"}
    assert json.loads(document["body"])["text"] == "later"


def test_entries_written_by_symfony_are_read(stream: Stream, redis_client: Any) -> None:
    serializer = make_serializer()
    transport = stream.transport(fetch_size=10)
    transport.setup()

    def document(text: str) -> dict[str, object]:
        encoded = serializer.encode(order(1, text))
        return {"body": encoded.body.decode(), "headers": dict(encoded.headers)}

    php = json.dumps(document("php")).encode()
    # Symfony's defaults: the field PHP-serialized by phpredis.
    redis_client.xadd(stream.name, {"message": b's:%d:"%s";' % (len(php), php)})
    # Symfony with Redis::SERIALIZER_NONE: plain JSON.
    redis_client.xadd(stream.name, {"message": json.dumps(document("plain"))})
    # A delayed message as Symfony queues it: JSON with a uniqid, due in the past.
    member = json.dumps({**document("delayed"), "uniqid": "AbCdEfGhIjKl"})
    redis_client.zadd(stream.queue, {member: 1000})

    received = receive(transport, 3)
    assert sorted(e.message.text for e in received) == ["delayed", "php", "plain"]
    for envelope in received:
        transport.ack(envelope)
    transport.flush()
    assert redis_client.xlen(stream.name) == 0
    assert redis_client.zcard(stream.queue) == 0


# -- bad entries -----------------------------------------------------------------------------------
def test_an_entry_from_another_writer_is_undecodable_and_can_be_rejected(
    stream: Stream, redis_client: Any
) -> None:
    transport = stream.transport()
    transport.setup()
    redis_client.xadd(stream.name, {"payload": "not ours"})
    [envelope] = receive(transport, 1)
    assert isinstance(envelope.message, UndecodableMessage)
    assert "no 'message' field" in envelope.message.reason
    transport.reject(envelope)
    transport.flush()
    assert redis_client.xlen(stream.name) == 0
    assert pending_count(redis_client, stream) == 0


def test_pending_entries_trimmed_away_are_acknowledged_and_skipped(
    stream: Stream, redis_client: Any
) -> None:
    first = stream.transport(consumer="worker-1", fetch_size=10)
    for number in range(3):
        first.send(order(number))
    assert len(receive(first, 3)) == 3
    first.close()  # without acknowledging: they stay pending for worker-1
    redis_client.xtrim(stream.name, maxlen=1, approximate=False)  # the two oldest are gone
    assert pending_count(redis_client, stream) == 3

    again = stream.transport(consumer="worker-1", fetch_size=10)
    [kept] = receive(again, 1)
    assert kept.message == Order(2)
    again.ack(kept)
    again.flush()
    assert pending_count(redis_client, stream) == 0


# -- own pending entries, claims, keepalive -------------------------------------------------
def test_own_pending_entries_come_first_after_a_restart(stream: Stream) -> None:
    crashed = stream.transport(consumer="worker-1", fetch_size=2)
    for number in range(4):
        crashed.send(order(number))
    assert ids(receive(crashed, 2)) == [0, 1]
    crashed.close()  # "crashed": neither acknowledged nor rejected

    restarted = stream.transport(consumer="worker-1", fetch_size=2)
    first = restarted.get()
    assert ids(first) == [0, 1], "its own pending entries come first"
    second = receive(restarted, 2)
    assert ids(second) == [2, 3]
    for envelope in first + second:
        restarted.ack(envelope)
    assert receive(restarted, 1, timeout=0.3) == []


def test_another_consumer_does_not_get_pending_entries_before_redeliver_timeout(
    stream: Stream,
) -> None:
    holder = stream.transport(redeliver_timeout=30, claim_interval=0)
    holder.send(order(1))
    [held] = receive(holder, 1)
    other = stream.transport(redeliver_timeout=30, claim_interval=0)
    assert receive(other, 1, timeout=0.3) == []
    holder.ack(held)


def test_an_abandoned_entry_is_claimed_and_keepalive_then_fails_for_its_old_holder(
    stream: Stream,
) -> None:
    slow = stream.transport(redeliver_timeout=0.2, claim_interval=0)
    slow.send(order(1))
    [held] = receive(slow, 1)
    time.sleep(0.3)
    other = stream.transport(redeliver_timeout=0.2, claim_interval=0)
    [claimed] = receive(other, 1)
    assert claimed.message == Order(1)
    assert entry_id(claimed) == entry_id(held)
    with pytest.raises(TransportError, match="no longer reserved"):
        slow.keepalive(held)
    other.ack(claimed)


def test_keepalive_keeps_an_entry_from_being_claimed(stream: Stream) -> None:
    worker = stream.transport(redeliver_timeout=0.3, claim_interval=0)
    worker.send(order(1))
    [held] = receive(worker, 1)
    other = stream.transport(redeliver_timeout=0.3, claim_interval=0)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        worker.keepalive(held)
        assert other.get() == []
        time.sleep(0.05)
    worker.ack(held)


def test_an_acknowledgement_reaches_redis_without_another_call(
    stream: Stream, redis_client: Any
) -> None:
    transport = stream.transport(fetch_size=10)
    for number in range(3):
        transport.send(order(number))
    received = receive(transport, 3)
    for envelope in received:
        transport.ack(envelope)
    # No get(), flush() or close(): the commands were written at once.
    assert wait_until(lambda: redis_client.xlen(stream.name) == 0)
    assert pending_count(redis_client, stream) == 0


def test_delete_after_ack_false_keeps_acknowledged_entries_out_of_counts_and_lists(
    stream: Stream, redis_client: Any
) -> None:
    transport = stream.transport(delete_after_ack=False, delete_after_reject=False, fetch_size=1)
    for number in range(3):
        transport.send(order(number))
    first = receive(transport, 1)[0]
    transport.ack(first)
    second = receive(transport, 1)[0]
    transport.reject(second)
    assert transport.message_count() == 1
    assert ids(transport.all()) == [2]
    assert transport.find(entry_id(first)) is None
    assert transport.find(entry_id(second)) is None
    assert redis_client.xlen(stream.name) == 3, "the entries stay in the stream"


def test_message_count_includes_delayed_and_received_messages(stream: Stream) -> None:
    transport = stream.transport(fetch_size=1)
    transport.send(order(1))
    transport.send(order(2))
    transport.send(order(3, "", DelayStamp(delay_ms=60_000)))
    assert transport.message_count() == 3
    [held] = receive(transport, 1)
    assert transport.message_count() == 3, "received but not acknowledged still counts"
    transport.ack(held)
    assert transport.message_count() == 2


def test_find_and_reject_remove_a_listed_message(stream: Stream) -> None:
    """What `messenger failed remove` does on a failure transport."""
    transport = stream.transport()
    sent = [transport.send(order(number)) for number in range(3)]
    found = transport.find(entry_id(sent[1]))
    assert found is not None
    assert found.message == Order(1)
    transport.reject(found)
    assert ids(transport.all()) == [0, 2]
    assert transport.message_count() == 2
    assert ids(receive(transport, 2)) == [0, 2]


def test_find_refuses_what_is_not_an_entry_id(stream: Stream) -> None:
    transport = stream.transport()
    transport.send(order(1))
    assert transport.find("not-an-id") is None
    assert transport.find("1") is None
    assert transport.find("12345-0") is None


def test_threads_sharing_one_transport_send_without_loss(stream: Stream) -> None:
    transport = stream.transport(fetch_size=50)
    transport.setup()

    def send(first: int) -> None:
        for number in range(first, first + 100):
            transport.send(order(number))

    threads = [threading.Thread(target=send, args=(first,)) for first in range(0, 400, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = receive(transport, 400)
    assert sorted(ids(received)) == list(range(400))
    assert len({entry_id(envelope) for envelope in received}) == 400


# -- the delay queue ------------------------------------------------------------------------------
def test_consumers_racing_for_due_delayed_messages_get_each_exactly_once(stream: Stream) -> None:
    count = 300
    sender = stream.transport()
    sender.send_batch([order(number, "", DelayStamp(delay_ms=1)) for number in range(count)])
    time.sleep(0.05)
    received: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        consumer = stream.transport(fetch_size=7)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = consumer.get()
            for envelope in got:
                consumer.ack(envelope)
            with lock:
                received.extend(ids(got))
                if len(received) >= count:
                    return

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duplicates = [number for number, times in Counter(received).items() if times > 1]
    assert not duplicates
    assert sorted(received) == list(range(count))


def test_send_batch_mixes_delayed_and_immediate_messages(stream: Stream, redis_client: Any) -> None:
    transport = stream.transport(fetch_size=10)
    sent = transport.send_batch(
        [
            order(1),
            order(2, "", DelayStamp(delay_ms=60_000)),
            order(3),
            order(4, "", DelayStamp(delay_ms=0)),
        ]
    )
    assert [e.last(TransportMessageIdStamp) is not None for e in sent] == [True, False, True, True]
    assert redis_client.xlen(stream.name) == 3
    assert redis_client.zcard(stream.queue) == 1


def test_stream_max_entries_trims_the_stream(stream: Stream, redis_client: Any) -> None:
    transport = stream.transport(stream_max_entries=10)
    transport.send_batch([order(number) for number in range(1000)])
    # Trimming is approximate (whole nodes of the stream are dropped) but does happen.
    assert 10 <= redis_client.xlen(stream.name) < 1000


# -- Redis lost its state ---------------------------------------------------------------------
def test_a_lost_consumer_group_is_created_again(stream: Stream, redis_client: Any) -> None:
    transport = stream.transport()
    transport.send(order(1))
    transport.ack(receive(transport, 1)[0])
    redis_client.delete(stream.name)  # as after a restart without persistence
    assert transport.get() == []
    transport.send(order(2))
    [envelope] = receive(transport, 1)
    assert envelope.message == Order(2)
    transport.ack(envelope)


def test_without_auto_setup_a_missing_group_is_an_error(stream: Stream) -> None:
    transport = stream.transport(auto_setup=False)
    with pytest.raises(TransportError, match="setup-transports"):
        transport.get()
    transport.setup()
    assert transport.get() == []


def test_scripts_forgotten_by_the_server_are_loaded_again(
    stream: Stream, redis_client: Any
) -> None:
    transport = stream.transport()
    assert transport.get() == []
    redis_client.script_flush()
    transport.send(order(1, "", DelayStamp(delay_ms=1)))
    time.sleep(0.01)
    [envelope] = receive(transport, 1)
    assert envelope.message == Order(1)
    transport.ack(envelope)


def test_deleting_entries_is_refused_on_a_stream_with_several_groups(
    stream: Stream, redis_client: Any
) -> None:
    redis_client.xgroup_create(stream.name, "other-app", "0", mkstream=True)
    with pytest.raises(ConfigurationError, match="several consumer groups"):
        stream.transport().setup()
    shared = stream.transport(delete_after_ack=False, delete_after_reject=False)
    shared.setup()
    shared.send(order(1))
    shared.ack(receive(shared, 1)[0])
    assert redis_client.xlen(stream.name) == 1, "the other group has yet to read it"


# -- consumers in the group -------------------------------------------------------------------
def test_a_generated_consumer_leaves_the_group_on_close_unless_it_holds_entries(
    stream: Stream, redis_client: Any
) -> None:
    def consumers() -> set[str]:
        return {c["name"].decode() for c in redis_client.xinfo_consumers(stream.name, "symfony")}

    idle = stream.transport()
    assert idle.get() == []
    holding = stream.transport()
    holding.send(order(1))
    receive(holding, 1)
    named = stream.transport(consumer="worker-7")
    assert named.get() == []
    assert consumers() == {idle.consumer, holding.consumer, "worker-7"}
    idle.close()
    holding.close()
    named.close()
    assert consumers() == {holding.consumer, "worker-7"}


def test_dead_consumers_without_pending_entries_are_forgotten(
    stream: Stream, redis_client: Any
) -> None:
    transport = stream.transport(redeliver_timeout=0.1, claim_interval=0)
    transport.setup()
    redis_client.xreadgroup("symfony", "dead-worker", {stream.name: ">"}, count=1)
    time.sleep(0.2)
    assert transport.get() == []
    names = {c["name"].decode() for c in redis_client.xinfo_consumers(stream.name, "symfony")}
    assert "dead-worker" not in names


# -- Redis unreachable ----------------------------------------------------------------------------
def test_an_unreachable_redis_at_start_up_is_a_clear_error_with_the_password_masked() -> None:
    transport = Stream("jobs", base_dsn="redis://user:s3cret@127.0.0.1:1").transport(
        reconnect_timeout=0.2
    )
    for operation in (transport.get, lambda: transport.send(order(1))):
        with pytest.raises(TransportError) as caught:
            operation()
        message = str(caught.value)
        assert "unreachable" in message
        assert "redis://user:***@127.0.0.1:1" in message
        assert "s3cret" not in message
    transport.close()


# -- handing messages back ---------------------------------------------------------------------
def test_a_released_message_comes_back_to_the_same_consumer_at_once(stream: Stream) -> None:
    transport = stream.transport(redeliver_timeout=3600, fetch_size=1)
    transport.send(order(1))
    transport.send(order(2))
    [first] = receive(transport, 1)
    transport.release(first)  # e.g. its failure could not be stored: try it again later
    [again] = receive(transport, 1)
    assert entry_id(again) == entry_id(first)
    transport.ack(again)
    [second] = receive(transport, 1)
    assert second.message == Order(2)


def test_closing_hands_back_fetched_unhandled_messages_to_the_next_consumer(
    stream: Stream,
) -> None:
    sender = stream.transport()
    sender.send_batch([order(number) for number in range(5)])
    stopping = stream.transport(redeliver_timeout=3600, fetch_size=10)
    batch = receive(stopping, 5)
    assert len(batch) == 5
    stopping.ack(batch[0])
    stopping.close()  # a worker stopped gracefully after its first message
    successor = stream.transport(redeliver_timeout=3600, fetch_size=10)
    taken = receive(successor, 4)
    assert sorted(envelope.message.id for envelope in taken) == [1, 2, 3, 4]


def test_an_error_not_pinned_to_one_entry_backs_off_instead_of_stopping_the_consumer(
    stream: Stream, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    transport = stream.transport(fetch_size=1)
    transport.send(order(1))
    [first] = receive(transport, 1)
    transport.ack(first)
    redis_client.delete(stream.name)
    redis_client.set(stream.name, "not a stream")  # WRONGTYPE for every stream command
    with caplog.at_level(logging.INFO, logger="messenger.transport.redis"):
        for _ in range(3):
            assert transport.get() == []  # no exception: a worker would die on every restart
        redis_client.delete(stream.name)
        transport.send(order(2))
        [second] = receive(transport, 1)
    assert second.message == Order(2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "logged once, not per attempt"
    assert "WRONGTYPE" in errors[0].getMessage()
    assert any("reachable again" in r.getMessage() for r in caplog.records)
