"""Migration 0011 on both engines (ClickHouse 18.16 and chdb): the views count each call in the latency
bucket the map's reader expects (api/servicemap/latency.py), in all three tiers, and the map's p50/p99
read from those counts are within the buckets' accuracy of the exact quantiles."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from api.queries import map as mq
from api.servicemap.latency import ACCURACY, with_latency
from api.timerange import Window
from pipeline.store import Store
from tests.factories import rpc_event
from tests.integration.test_service_map import insert
from tests.unit.test_map_latency import buckets_of, exact

pytestmark = pytest.mark.services


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("ch_store" if request.param == "clickhouse-18.16" else "chdb_store")


def test_views_bucket_latencies_as_the_map_reads_them(store: Store) -> None:
    p = f"b{uuid.uuid4().hex[:6]}"  # chdb is shared by the test session: a fleet of this test's own
    rng = random.Random(11)
    latencies = [0.0, 0.0004, 0.25] + [rng.lognormvariate(3, 1.3) for _ in range(600)]
    ts_ms = int(time.time() * 1000) - 120_000
    insert(store, "rpc", "rpc_calls", [rpc_event(i, ts_ms=ts_ms, caller=f"{p}.a", callee=f"{p}.c", side="client",
                                                 latency_ms=latency) for i, latency in enumerate(latencies)])
    for table in ("rpc_edge_latency_1m", "rpc_edge_latency_10m", "rpc_edge_latency_1h"):
        rows = store.query(f"SELECT bucket, sum(calls) AS n FROM {table} WHERE callee = %(callee)s "
                           f"GROUP BY bucket", {"callee": f"{p}.c"})
        assert {int(r["bucket"]): int(r["n"]) for r in rows} == buckets_of(latencies), table

    # Read through the map's queries: the current hour from the 1h tier, the rest from minutes.
    now_s = time.time()
    window = Window(int(now_s) - 900, int(now_s) + 1, 1)
    pairs = [row for row in mq.call_totals(store, window, now_s) if row["callee"] == f"{p}.c"]
    pairs, callees = with_latency(pairs, mq.latency_buckets(store, window, now_s))
    assert [(row["caller"], row["side"], row["calls"]) for row in pairs] == [(f"{p}.a", "client", len(latencies))]
    for row in (pairs[0], callees[0]):
        assert row["p50"] == pytest.approx(exact(latencies, 0.5), rel=ACCURACY)
        assert row["p99"] == pytest.approx(exact(latencies, 0.99), rel=ACCURACY)
