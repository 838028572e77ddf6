"""Issue 13 section 3: dead letters have one judge. The loader and `svcpulse dlq replay` reach the same
verdict on the same bytes, replayed copies keep their size note and key, and dead-lettering is logged."""

from __future__ import annotations

import json
import logging

import pytest

from core.kafka import Consumer, Message, open_consumer
from pipeline import events
from pipeline.dlq import replay
from pipeline.transform import transform
from pipeline.writer import DeadLetterLog
from svcpulse.services import Tansu
from tests.factories import rpc_event

VALID = events.encode("rpc", rpc_event(1))
CASES = {
    "not UTF-8": b"\xff\xfe\xfd{}",
    "UTF-16 JSON of a valid event": json.dumps(rpc_event(1)).encode("utf-16"),
    "UTF-32 JSON": json.dumps(rpc_event(1)).encode("utf-32"),
    "a lone surrogate escape": VALID.replace(b'"caller-1"', b'"\\ud800"'),
    "NaN": VALID.replace(b"1.625", b"NaN"),
    "an integer past 64 bits": VALID.replace(b'"ts_ms":', b'"ts_ms":1' + b"0" * 30 + b',"x":'),
    "cut JSON": VALID[:-1],
    "over 512 KiB": b'{"v":1,"pad":"' + b"x" * 600_000 + b'"}',
}


def poll_at_least(consumer: Consumer, n: int) -> list[Message]:
    got: list[Message] = []
    while len(got) < n:
        polled = consumer.poll(5.0)
        assert polled, f"only {len(got)} of {n} message(s) arrived"
        got += polled
    consumer.close()
    return got


def _dead(raw: bytes, offset: int = 0) -> events.Event:
    dead = transform(Message("svcpulse.rpc", 2, offset, 1_795_000_000_000, b"k", raw))
    assert isinstance(dead, dict), "expected a dead letter"
    return dead


@pytest.mark.parametrize("case", CASES)
def test_the_loader_and_the_stdlib_decoder_give_the_same_verdict(case: str) -> None:
    raw = CASES[case]
    dead = _dead(raw)
    reason = dead["reason"].removesuffix(events.cut_note(dead))
    with pytest.raises(events.Rejection) as stdlib:
        events.decode("rpc", raw)  # the contract module's own parser (stdlib json), as emitters' tests use
    same_kind = reason.split(":")[0]
    assert stdlib.value.reason.split(":")[0] == same_kind, (reason, stdlib.value.reason)


@pytest.mark.services
def test_utf16_and_non_utf8_dead_letters_are_judged_the_same_on_replay(broker: Tansu) -> None:
    dead = [_dead(raw, offset) for offset, raw in enumerate(CASES.values())]
    report = replay(broker.bootstrap, iter(dead), requeue_invalid=True, client="confluent")
    assert report.replayed == 0
    assert [reason for _, reason in report.still_invalid] == [
        d["reason"].removesuffix(f" (payload cut to the first {events.MAX_DEAD_LETTER_PAYLOAD} of 600016 bytes)")
        for d in dead]
    consumer = open_consumer("kafka-python", broker.bootstrap)
    consumer.assign({("svcpulse.dlq", p): None for p in consumer.partitions_for("svcpulse.dlq")})
    requeued = poll_at_least(consumer, len(dead))
    assert {m.key for m in requeued} == {b"svcpulse.rpc:2"}, "requeued copies must keep the dead-letter key"
    by_offset = {events.decode("dlq", m.value or b"")["offset"]: events.decode("dlq", m.value or b"")
                 for m in requeued}
    for original in dead:
        copy = by_offset[original["offset"]]
        assert copy["reason"] == original["reason"] and copy["payload"] == original["payload"]
    assert "of 600016 bytes" in by_offset[len(CASES) - 1]["reason"], "the original size note was lost"


@pytest.mark.services
def test_a_fixed_dead_letter_replays_with_its_key_and_passes_the_same_window(broker: Tansu) -> None:
    stale = events.encode("rpc", rpc_event(5, ts_ms=1_000_000_000_000, callee="old.svc"))  # 2001
    fresh = events.encode("rpc", rpc_event(6, callee="shop.cart"))
    dead = [{**_dead(b"{}", 0), "payload": stale.decode()}, {**_dead(b"{}", 1), "payload": fresh.decode()}]
    report = replay(broker.bootstrap, iter(dead), requeue_invalid=False, client="kafka-python")
    assert report.replayed == 1 and "plausibility window" in report.still_invalid[0][1]
    consumer = open_consumer("confluent", broker.bootstrap)
    consumer.assign({("svcpulse.rpc", p): None for p in consumer.partitions_for("svcpulse.rpc")})
    replayed = poll_at_least(consumer, 1)
    assert [(m.key, m.value) for m in replayed] == [(b"shop.cart", fresh)]


def test_dead_lettering_is_logged_rate_limited_with_count_and_first_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "svcpulse.loader")
    dead_log = DeadLetterLog(every_s=3600)
    dead_log.add(["field 'ts_ms': expected 1..4294967295999, got 4294967296000"])
    dead_log.add(["message is not valid JSON: x", "message is not valid UTF-8"])
    assert not caplog.records, "one line per interval, not one per dead letter"
    dead_log.close()
    assert [r.getMessage() for r in caplog.records] == [
        "3 message(s) dead-lettered to svcpulse.dlq in the last 0 s; first reason: "
        "field 'ts_ms': expected 1..4294967295999, got 4294967296000"]
