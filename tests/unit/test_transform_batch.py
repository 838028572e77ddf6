import datetime as dt

from pipeline import events
from pipeline.batch import Batch, columns
from pipeline.retention import expired
from pipeline.transform import COLUMNS, Message, transform
from tests.factories import rpc_event, tcp_event


def message(topic: str, value: bytes, offset: int = 7) -> Message:
    return Message(topic, 3, offset, 1_764_000_000_500, None, value)


def test_valid_message_becomes_a_row_in_column_order() -> None:
    event = tcp_event(5)
    kind, row = transform(message("svcpulse.tcp", events.encode("tcp", event)))
    assert kind == "tcp"
    as_dict = dict(zip(COLUMNS["tcp"], row, strict=True))
    assert as_dict["ts"] == event["ts_ms"] // 1000
    assert {k: as_dict[k] for k in event} == event
    assert (as_dict["_topic"], as_dict["_partition"], as_dict["_offset"]) == ("svcpulse.tcp", 3, 7)
    assert as_dict["_kafka_ts_ms"] == 1_764_000_000_500


def test_bad_message_becomes_a_dead_letter_with_reason_and_source() -> None:
    dead = transform(message("svcpulse.rpc", b'{"v": 1}', offset=99))
    assert isinstance(dead, dict)
    assert dead["reason"] == "field 'ts_ms': required, missing"
    assert (dead["topic"], dead["partition"], dead["offset"], dead["payload"]) == (
        "svcpulse.rpc", 3, 99, '{"v": 1}')


def test_unknown_topic_and_tombstone_are_dead_letters() -> None:
    assert "not loaded" in transform(message("other", b"{}"))["reason"]  # type: ignore[index]
    assert "tombstone" in transform(Message("svcpulse.rpc", 0, 1, 0, None, None))["reason"]  # type: ignore[arg-type,index]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batch_is_ready_by_size() -> None:
    batch = Batch(max_rows=3, max_age_s=60, clock=FakeClock())
    for offset in range(3):
        assert not batch.ready()
        batch.add_row("rpc", (offset,), message("svcpulse.rpc", b"{}", offset))
        batch.mark("svcpulse.rpc", 0, offset)
    assert batch.ready()


def test_after_an_empty_poll_a_tenth_of_a_batch_is_ready_and_less_waits_for_the_age() -> None:
    batch = Batch(max_rows=100, max_age_s=60, clock=FakeClock())
    for offset in range(10):
        assert not batch.ready(drained=True)
        batch.add_row("rpc", (offset,), message("svcpulse.rpc", b"{}", offset))
        batch.mark("svcpulse.rpc", 0, offset)
    assert batch.ready(drained=True) and not batch.ready(drained=False)


def test_batch_is_ready_by_age_from_first_message() -> None:
    clock = FakeClock()
    batch = Batch(max_rows=1000, max_age_s=2.0, clock=clock)
    assert not batch.ready() and batch.empty
    batch.add_dead_letter({"reason": "x", "topic": "svcpulse.rpc", "partition": 1, "offset": 5})
    batch.mark("svcpulse.rpc", 1, 5)
    clock.now += 1.9
    assert not batch.ready()
    clock.now += 0.2
    assert batch.ready()


def test_batch_keeps_highest_offset_per_partition_and_transposes() -> None:
    batch = Batch()
    for partition, offset in [(0, 5), (0, 3), (1, 9), (0, 8)]:
        batch.mark("svcpulse.rpc", partition, offset)
    assert batch.offsets == {("svcpulse.rpc", 0): 8, ("svcpulse.rpc", 1): 9}
    batch.add_row("rpc", (1, "a", "svcpulse.rpc", 3, 7, 0), message("svcpulse.rpc", b"a", 7))
    batch.add_row("rpc", (2, "b", "svcpulse.rpc", 3, 8, 0), message("svcpulse.rpc", b"b", 8))
    assert columns(batch.rows["rpc"]) == [(1, 2), ("a", "b"), ("svcpulse.rpc",) * 2, (3, 3), (7, 8), (0, 0)]
    assert batch.message_of(batch.rows["rpc"][1]).value == b"b"  # a refused row's original bytes


def test_a_dead_letter_is_kept_once_per_source_message() -> None:
    batch = Batch()
    for reason in ("store refused it", "store refused it again (a retried bisection)"):
        batch.add_dead_letter({"reason": reason, "topic": "svcpulse.rpc", "partition": 0, "offset": 4})
    assert [d["reason"] for d in batch.dead_letters] == ["store refused it"]


def test_every_day_partitioned_table_has_a_retention() -> None:
    import re

    from pipeline.migrate import load_migrations
    from pipeline.retention import retention_days

    day_tables = {match for m in load_migrations() for match in re.findall(
        r"CREATE TABLE IF NOT EXISTS \$db\.(\w+) \((?:(?!CREATE ).)*?PARTITION BY toYYYYMMDD", m.sql, re.S)}
    assert day_tables == set(retention_days(7, 90, 30))


def test_retention_picks_only_expired_day_partitions() -> None:
    parts = [("rpc_calls", "20261118"), ("rpc_calls", "20261119"), ("rpc_calls", "20261126"),
             ("rpc_calls_1m", "20261001"), ("schema_migrations", "tuple()"), ("other", "20200101")]
    keep = {"rpc_calls": 7, "rpc_calls_1m": 90}
    assert expired(parts, keep, dt.date(2026, 11, 26)) == [("rpc_calls", "20261118"), ("rpc_calls", "20261119")]


def test_rpc_columns_are_contract_plus_ts_and_provenance() -> None:
    fields = [f.name for f in events.SCHEMAS["rpc"]]
    assert COLUMNS["rpc"] == ("ts", *fields, "_topic", "_partition", "_offset", "_kafka_ts_ms")
    assert transform(message("svcpulse.rpc", events.encode("rpc", rpc_event(1))))[0] == "rpc"


def test_retention_on_a_cluster_drops_shard_partitions_on_every_node() -> None:
    from pipeline.retention import drop_partition_sql

    parts = [("rpc_calls_local", "20261101"), ("rpc_calls", "20261101"), ("rpc_calls_local", "20261125")]
    assert expired(parts, {"rpc_calls": 7}, dt.date(2026, 11, 26)) == parts[:2]
    assert drop_partition_sql("rpc_calls_local", "20261101", "prod") == (
        "ALTER TABLE rpc_calls_local ON CLUSTER prod DROP PARTITION 20261101")
    assert drop_partition_sql("rpc_calls", "20261101") == "ALTER TABLE rpc_calls DROP PARTITION 20261101"
