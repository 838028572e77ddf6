"""Migrations and retention on both engines: the real ClickHouse 18.16 server and chdb (current)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline import events
from pipeline.migrate import load_migrations, migrate
from pipeline.retention import apply_retention
from pipeline.store import Store
from pipeline.transform import COLUMNS
from tests.factories import rpc_event

pytestmark = pytest.mark.services

CLICKHOUSE_TYPES = {int: ("UInt8", "UInt16", "UInt32", "UInt64"), float: ("Float64",), str: ("String",)}
TABLES = {"rpc": "rpc_calls", "tcp": "tcp_connections", "load": "instance_load"}


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("ch_store" if request.param == "clickhouse-18.16" else "chdb_store")


def test_raw_tables_match_the_contract(store: Store) -> None:
    for kind, table in TABLES.items():
        described = store.execute(f"DESCRIBE TABLE {table}")
        columns = {row[0]: row[1] for row in described}
        assert tuple(columns) == COLUMNS[kind], f"{table} column order differs from the transform"
        for field in events.SCHEMAS[kind]:
            assert columns[field.name] in CLICKHOUSE_TYPES[field.type], (table, field.name, columns[field.name])
        assert columns["ts"] == "DateTime"


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    assert migrate(store, log=False) == []
    versions = sorted(row[0] for row in store.execute("SELECT version FROM schema_migrations"))
    assert versions == [m.version for m in load_migrations()]


def test_rollup_is_fed_by_the_materialized_view(store: Store) -> None:
    service = f"rollup-{store.dialect}"
    rows = [rpc_event(i, callee=service, instance="a:1", interface="GET /x", caller="c", version="v",
                      side="server", latency_ms=float(i % 100)) for i in range(1000)]
    columns = list(COLUMNS["rpc"])
    data = [[r["ts_ms"] // 1000 if c == "ts" else r.get(c, "" if c == "_topic" else 0) for r in rows]
            for c in columns]
    store.insert("rpc_calls", columns, data)
    calls, errors, timeouts, p50, p99 = store.execute(
        "SELECT countMerge(calls), sumMerge(errors), sumMerge(timeouts), "
        "quantilesTDigestMerge(0.5, 0.95, 0.99)(latency)[1], quantilesTDigestMerge(0.5, 0.95, 0.99)(latency)[3] "
        "FROM rpc_calls_1m WHERE callee = %(s)s", {"s": service})[0]
    assert (calls, errors, timeouts) == (1000, 333, 333)
    assert abs(p50 - 49.5) <= 3 and abs(p99 - 99) <= 2


def test_retention_drops_only_old_day_partitions(store: Store) -> None:
    service = f"retention-{store.dialect}"
    old, recent = dt.date(2026, 11, 1), dt.date(2026, 11, 25)
    columns = list(COLUMNS["rpc"])
    for day in (old, recent):
        ts = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp())
        event = rpc_event(0, callee=service, ts_ms=ts * 1000)
        store.insert("rpc_calls", columns,
                     [[ts] if c == "ts" else [event.get(c, "" if c == "_topic" else 0)] for c in columns])
    dropped = apply_retention(store, {"rpc_calls": 7}, today=dt.date(2026, 11, 26))
    assert ("rpc_calls", "20261101") in dropped and ("rpc_calls", "20261125") not in dropped
    left = store.execute("SELECT toYYYYMMDD(ts) FROM rpc_calls WHERE callee = %(s)s", {"s": service})
    assert [row[0] for row in left] == [20261125]
