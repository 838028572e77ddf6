"""The loader takes a poll in runs of one partition (pipeline/loader.py _take): a run the fast path vouches
for goes in at once (transform_run), anything else record by record, with the same rows, dead letters,
offsets and gap handling as taking every record alone."""

from __future__ import annotations

import json
from typing import Any

import orjson

from core.kafka import Message
from pipeline import events
from pipeline.batch import Batch
from pipeline.gaps import GapGuard
from pipeline.loader import Loader, LoaderConfig
from pipeline.topics import TOPIC_BY_KIND
from pipeline.transform import COLUMNS, as_lines, is_line, transform, transform_run
from tests.factories import FACTORIES

RPC, TCP = TOPIC_BY_KIND["rpc"], TOPIC_BY_KIND["tcp"]


class Seeks:
    """The one consumer call _take makes: a seek back to a hole."""

    def __init__(self) -> None:
        self.seeks: list[tuple[tuple[str, int], int]] = []

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        self.seeks.append((partition, offset))


def loader() -> Loader:
    taker = Loader.__new__(Loader)  # no broker: only what _take touches
    taker.config, taker.batch, taker.gaps, taker.consumer = LoaderConfig("unused:9092"), Batch(), GapGuard(), Seeks()
    taker.streams = None  # a store without JSON-lines inserts
    return taker


def message(topic: str, partition: int, offset: int, value: bytes | None) -> Message:
    return Message(topic, partition, offset, 1_764_000_000_000 + offset, None, value)


def valid(kind: str, i: int, **changes: Any) -> bytes:
    return events.encode(kind, FACTORIES[kind](i, **changes))


def raw(kind: str, i: int, **changes: Any) -> bytes:
    """JSON the contract may refuse."""
    return json.dumps(FACTORIES[kind](i, **changes)).encode()


def poll_with_every_case() -> list[Message]:
    """Two partitions of rpc and one of tcp, interleaved, with bad messages among good ones."""
    rpc0 = [message(RPC, 0, n, valid("rpc", n)) for n in range(10, 20)]
    rpc1 = [message(RPC, 1, n, valid("rpc", n, workload="", workload_kind="")) for n in range(5)]  # derived
    tcp2 = [message(TCP, 2, n, valid("tcp", n)) for n in range(7)]
    bad = [message(RPC, 1, 5, b'{"v": 1}'), message(RPC, 1, 6, None),
           message(RPC, 1, 7, raw("rpc", 7, caller="not a name")),
           message(RPC, 1, 8, raw("rpc", 8, ts_ms=1))]  # outside the window
    return [*rpc0[:6], *rpc1, *bad, *tcp2, *rpc0[6:]]


def taken_alone(records: list[Message]) -> Batch:
    batch = Batch()
    for record in records:
        result = transform(record, WINDOW)
        batch.add_row(*result, record) if isinstance(result, tuple) else batch.add_dead_letter(result)
        batch.mark(record.topic, record.partition, record.offset)
    return batch


WINDOW = events.plausible_window(FACTORIES["rpc"](0)["ts_ms"], 7 * 86_400, 3600)


def test_runs_give_the_rows_dead_letters_and_offsets_of_records_taken_alone(monkeypatch: Any) -> None:
    monkeypatch.setattr(events, "plausible_window", lambda *_: WINDOW)
    taker, records = loader(), poll_with_every_case()
    taker._take(records)
    alone = taken_alone(records)
    assert taker.batch.rows == alone.rows and taker.batch.offsets == alone.offsets
    assert [m.offset for m in taker.batch.messages["rpc"]] == [m.offset for m in alone.messages["rpc"]]
    assert taker.batch.dead_letters == alone.dead_letters and len(alone.dead_letters) == 4
    assert {d["offset"]: d["reason"].split(":")[0] for d in alone.dead_letters} == {
        5: "field 'ts_ms'", 6: "message has no value (a tombstone)", 7: "field 'caller'", 8: "field 'ts_ms'"}
    derived = [row[14:16] for row in taker.batch.rows["rpc"][6:11]]  # partition 1's: names from the cgroup
    assert derived == [("pod0", "cgroup"), ("pod1", "cgroup"), ("pod2", "cgroup"), ("pod3", "cgroup"),
                       ("pod4", "cgroup")], derived
    assert taker.consumer.seeks == []  # type: ignore[attr-defined]


def test_a_run_is_all_or_nothing_for_the_fast_path() -> None:
    good = [message(RPC, 0, n, valid("rpc", n)) for n in range(4)]
    kind, rows = transform_run(good, WINDOW) or ("", [])
    assert kind == "rpc" and rows == [transform(m, WINDOW)[1] for m in good]  # type: ignore[index]
    assert transform_run([*good, message(RPC, 0, 4, raw("rpc", 4, instance="10.0.0.1:80\n"))], WINDOW) is None
    assert transform_run([message("other", 0, 0, b"{}")], WINDOW) is None


def test_a_hole_inside_a_run_is_fetched_again_and_nothing_past_it_is_taken() -> None:
    taker = loader()
    first = [message(RPC, 0, n, valid("rpc", n)) for n in (1, 2, 3)]
    taker._take(first)
    taker._take([message(RPC, 0, n, valid("rpc", n)) for n in (4, 5, 8, 9)])  # 6 and 7 skipped by the client
    assert taker.consumer.seeks == [((RPC, 0), 6)]  # type: ignore[attr-defined]
    assert [m.offset for m in taker.batch.messages["rpc"]] == [1, 2, 3, 4, 5]
    assert taker.batch.offsets == {(RPC, 0): 5}
    taker._take([message(RPC, 0, n, valid("rpc", n)) for n in (6, 7, 8, 9)])  # the refetch fills the hole
    assert [m.offset for m in taker.batch.messages["rpc"]] == list(range(1, 10))
    taker._take([message(RPC, 0, n, valid("rpc", n)) for n in (12, 13)])  # a new hole at a run's start
    assert taker.consumer.seeks[-1] == ((RPC, 0), 10) and taker.batch.offsets == {(RPC, 0): 9}  # type: ignore[attr-defined]
    taker._take([message(RPC, 0, n, valid("rpc", n)) for n in (12, 13)])  # again: the broker has no 10, 11
    assert taker.batch.offsets == {(RPC, 0): 13} and len(taker.batch.rows["rpc"]) == 11


def test_line_rows_hold_what_the_rows_hold() -> None:
    """For a store that takes JSON lines, a run the fast path vouches for becomes the messages' own bytes
    with ts and the provenance spliced in; read back as JSON they are the columns' row, field for field."""
    for kind in FACTORIES:
        run = [message(TOPIC_BY_KIND[kind], 3, n, valid(kind, n)) for n in range(5)]
        _, lines = transform_run(run, WINDOW, lines=True) or ("", [])
        _, rows = transform_run(run, WINDOW) or ("", [])
        assert all(map(is_line, lines)) and not any(map(is_line, rows))
        assert [line[1:] for line in lines] == [row[-4:] for row in rows]  # the loader's provenance
        as_json = [dict(zip(COLUMNS[kind], row, strict=True)) for row in rows]
        assert [orjson.loads(line[0]) for line in lines] == as_json
        assert [orjson.loads(line) for line in as_lines(kind, [*rows[:2], *lines[2:]])] == as_json


def test_only_the_contracts_own_spelling_goes_as_it_is() -> None:
    """Messages whose names are derived here, or whose bytes do not start with "{", become rows (their
    lines are written from the values); the same rows either way."""
    derived = [message(RPC, 0, n, valid("rpc", n, workload="", workload_kind="")) for n in range(3)]
    spaced = [message(RPC, 0, n, b" " + valid("rpc", n)) for n in range(3)]
    for run in (derived, spaced):
        _, rows = transform_run(run, WINDOW, lines=True) or ("", [])
        assert rows == transform_run(run, WINDOW)[1] and not any(map(is_line, rows))  # type: ignore[index]


def test_a_field_a_line_leaves_out_gets_the_contracts_default() -> None:
    """The server fills a field the JSON leaves out with its type's zero: the contract's optional fields
    must default to exactly that for the bytes to go as they are."""
    zero = {int: 0, float: 0.0, str: ""}
    assert all(field.default == zero[field.type] for schema in events.SCHEMAS.values() for field in schema
               if not field.required)
