"""Long ranges read whole hours from rpc_calls_1h and the edges from rpc_calls_1m: same answers."""

from __future__ import annotations

import pytest

from api.queries.timeseries import Selector, rpc_aggregates
from api.timerange import Window
from pipeline.store import Store
from tests.integration.weights_helpers import insert_rpc, rpc_event

pytestmark = pytest.mark.services

HOUR = 3600
START = 1_764_000_000 // HOUR * HOUR  # whole hour


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("ch_store" if request.param == "clickhouse-18.16" else "chdb_store")


def test_hours_and_edges_give_the_minute_answer(store: Store) -> None:
    service = f"hourly-{store.dialect}"
    calls = [rpc_event(service, f"10.6.0.{n % 3}:80", ok=n % 10 != 0, latency_ms=float(n % 100),
                       ts_ms=(START + 1800 + n * 3) * 1000) for n in range(9000)]  # 7.5 h from half past
    insert_rpc(store, calls)
    # 20 minutes into the first hour .. 10 minutes into the last: two partial hours, six whole ones
    window = Window(from_s=START + 1200, to_s=START + 8 * HOUR + 600, step_s=HOUR)
    selector = Selector.of(service=service)
    hourly = rpc_aggregates(store, selector, ("instance",), window, bucketed=False)
    by_minutes = rpc_aggregates(store, selector, ("instance",), Window(window.from_s, window.to_s, 60),
                                bucketed=False)
    expected = [c for c in calls if window.from_s * 1000 <= c["ts_ms"] < window.to_s * 1000]
    assert sum(row["calls"] for row in hourly) == len(expected) == sum(row["calls"] for row in by_minutes)
    assert sum(row["errors"] for row in hourly) == sum(c["status"] == "error" for c in expected)
    for hour_row, minute_row in zip(sorted(hourly, key=lambda r: r["instance"]),
                                    sorted(by_minutes, key=lambda r: r["instance"]), strict=True):
        assert hour_row["p99"] == pytest.approx(minute_row["p99"], abs=2.0)
    buckets = rpc_aggregates(store, selector, (), window)
    assert [row["t"] for row in buckets] == list(range(START, START + 8 * HOUR, HOUR))
    assert sum(row["calls"] for row in buckets) == len(expected)
