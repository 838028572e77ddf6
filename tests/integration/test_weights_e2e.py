"""End to end: 5 real HTTP instances -> interceptor -> Kafka (Tansu) -> loader -> ClickHouse 18.16 -> the
weight feed -> balancer.client.Balancer driving the traffic. Faults are injected into two instances at
once (one fails 50% of calls, another gets +200 ms); each must fall to <= 10% of its previous share
within 10 s, and come back gradually after healing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.main import create_app
from api.queries.discovery import write_policy
from balancer.client import WeightFeedClient
from core.settings import Settings
from pipeline.store import Store
from svcpulse.fleet import Fleet, Traffic
from svcpulse.services import ClickHouseServer, Tansu
from tests.integration.helpers import LoaderThread, wait_for
from tests.integration.weights_helpers import serve, weigh_worker

pytestmark = pytest.mark.services
SERVICE = "fleet.app"


def shares(traffic: Traffic, since: float, until: float, instances: list[str]) -> list[float]:
    calls = traffic.between(since, until)
    assert len(calls) > 200, f"too little traffic to measure: {len(calls)} calls"
    return [Traffic.share(calls, i) for i in instances]


def test_faulty_instances_lose_their_share_within_10_s_and_regain_it_gradually(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}", feed_open=True,
                        kafka_bootstrap=broker.bootstrap)
    write_policy(ch_store, SERVICE, ["127.0.0.0/8"], why="the fleet on loopback")  # telemetry alone routes nothing
    with Fleet(SERVICE, broker.bootstrap) as fleet, LoaderThread(broker.bootstrap, ch_store):
        failing, slow = fleet.instances[1], fleet.instances[3]
        bad = [failing.address, slow.address]
        # Equal weights from the fallback until the feed answers; the weigh worker starts once every
        # instance has called in, so its first cycle (replaying the window) knows the whole fleet (none is "new").
        with WeightFeedClient("http://127.0.0.1:1", SERVICE, fallback=fleet.addresses) as idle, \
                Traffic(idle, threads=8) as warmup:
            wait_for(lambda: ch_store.execute("SELECT uniqExact(instance) FROM rpc_calls")[0][0] == 5, 30,
                     "calls of all 5 instances in ClickHouse")
        with weigh_worker(settings, ch_store), serve(create_app(settings)) as api, \
                WeightFeedClient(api, SERVICE, wait_s=5, fallback=fleet.addresses) as feed, \
                Traffic(feed, threads=8) as traffic:
            assert warmup.calls and feed.wait_ready(45), feed.last_error  # the worker joins its group first
            time.sleep(6)
            before = shares(traffic, time.monotonic() - 5, time.monotonic(), bad)
            assert all(0.12 < s < 0.28 for s in before), before

            failing.error_rate, slow.extra_ms = 0.5, 200
            t0 = time.monotonic()
            time.sleep(10)
            time.sleep(4)
            cut = shares(traffic, t0 + 10, t0 + 14, bad)
            assert cut[0] <= before[0] / 10 and cut[1] <= before[1] / 10, (before, cut, feed.current())
            print(f"shares before {before}, 10-14 s after the faults {cut}")

            failing.error_rate, slow.extra_ms = 0.0, 0.0
            healed = time.monotonic()
            recovery = []
            for step in range(13):  # 65 s, in 5 s buckets
                time.sleep(5)
                recovery.append(shares(traffic, healed + 5 * step, healed + 5 * step + 5, bad))
            for n in range(2):
                path = [round(r[n] / before[n], 2) for r in recovery]
                assert path[0] < 0.5, f"{bad[n]} came back at once, not gradually: {path}"
                assert path[-1] >= 0.6, f"{bad[n]} did not regain its share: {path}"
                assert max(path[:4]) < path[-1], f"{bad[n]} share did not grow: {path}"
                print(f"{bad[n]} share / before, every 5 s after healing: {path}")
