"""pipeline/rollup_repair.py without a cluster: every view over a raw table is known with its count, and
a block's rows are described by their Kafka coordinates (tests/cluster/test_rollups.py runs the repair)."""

from __future__ import annotations

from pipeline.ddl import CreateView, Name, parse
from pipeline.migrate import load_migrations
from pipeline.rollup_repair import Pending, block_ranges, rollup_views


def test_every_view_over_a_raw_table_is_checked_by_a_count_of_its_rows() -> None:
    over_raw = {view.name.table for m in load_migrations() for text in m.statements("db")
                if isinstance(view := parse(text), CreateView) and view.materialized
                and view.sources[0][2].table in ("rpc_calls", "tcp_connections", "instance_load")}
    views = {view.name: view for view in rollup_views("db")}
    assert set(views) == over_raw
    assert views["rpc_calls_1m_mv"].count == "countMerge(calls)"
    assert views["rpc_edge_instances_1m_mv"].count == "sum(calls)"
    assert views["rpc_calls_1h_mv"].keys == "hour, callee, interface, instance, caller, version, side"
    over = views["workloads_1m_rpc_mv"].over(Name("db", "rpc_calls_local"), "1")
    assert "FROM db.rpc_calls_local PREWHERE 1\nWHERE workload != ''" in over


def test_a_view_a_later_migration_re_creates_is_repaired_once_by_its_newest_select() -> None:
    names = [view.name for view in rollup_views("db")]
    assert len(names) == len(set(names)), "a view repaired twice would insert its rows twice"
    edges = {view.name: view for view in rollup_views("db")}["rpc_edges_1m_mv"]
    assert "AS slow" in edges.select, "migration 0011's definition, not 0009's"


def test_a_block_is_its_offset_ranges_per_partition() -> None:
    rows = [("a", "svcpulse.rpc", 1, offset, 0) for offset in (7, 3, 5)] + [("b", "svcpulse.rpc", 2, 9, 0)]
    ranges = block_ranges(rows)
    assert ranges == {("svcpulse.rpc", 1): (3, 7), ("svcpulse.rpc", 2): (9, 9)}
    assert Pending("rpc_calls", ranges).condition() == (
        "(_topic = 'svcpulse.rpc' AND _partition = 1 AND _offset BETWEEN 3 AND 7) OR "
        "(_topic = 'svcpulse.rpc' AND _partition = 2 AND _offset BETWEEN 9 AND 9)")
