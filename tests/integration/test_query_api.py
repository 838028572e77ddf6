"""The query and capacity API on known data: through Kafka and the real loader into ClickHouse 18.16, and
the same rows inserted into chdb, answering the same questions with the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration import query_data as qd
from tests.integration.helpers import LoaderThread, count, produce, wait_for

pytestmark = pytest.mark.services


def client_on(store: Store) -> TestClient:
    return TestClient(create_app(Settings(feed_open=True, kafka_bootstrap="127.0.0.1:1"), store=store))


def get(client: TestClient, url: str, **params: Any) -> Any:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def by_label(answer: dict[str, Any], label: str) -> dict[str, list[list[float]]]:
    return {s["labels"][label]: s["points"] for s in answer["series"]}


def check_series(client: TestClient, t: int) -> None:
    span = {"service": qd.SERVICE, "from": t * 1000, "to": (t + 120) * 1000}
    calls = get(client, "/v1/series", metric="calls", by="instance", step=60, **span)
    assert calls["source"] == "rollup" and calls["step_s"] == 60
    m0, m1 = t * 1000, (t + 60) * 1000
    assert by_label(calls, "instance") == {qd.A: [[m0, 60], [m1, 120]], qd.B: [[m0, 30], [m1, 0]]}
    assert [s["labels"]["instance"] for s in calls["series"]] == [qd.A, qd.B]  # busiest first
    rps = get(client, "/v1/series", metric="rps", by="instance", step=60, **span)
    assert by_label(rps, "instance") == {qd.A: [[m0, 1.0], [m1, 2.0]], qd.B: [[m0, 0.5], [m1, 0.0]]}
    success = get(client, "/v1/series", metric="success_rate", by="instance", step=60, **span)
    assert by_label(success, "instance") == {qd.A: [[m0, 0.85], [m1, 1.0]], qd.B: [[m0, 1.0]]}  # no calls: a gap
    p99 = by_label(get(client, "/v1/series", metric="latency_p99", by="instance", step=60, **span), "instance")
    assert p99[qd.B] == [[m0, 100.0]] and p99[qd.A][1] == [m1, 10.0]
    assert 57 <= p99[qd.A][0][1] <= 60
    p50 = by_label(get(client, "/v1/series", metric="latency_p50", by="instance", step=60, **span), "instance")
    assert 29 <= p50[qd.A][0][1] <= 32
    raw = get(client, "/v1/series", metric="calls", instance=qd.A, step=30, **span)
    assert raw["source"] == "raw" and raw["series"][0]["points"] == [[m0, 30], [m0 + 30_000, 30], [m1, 60],
                                                                      [m1 + 30_000, 60]]
    both_sides = get(client, "/v1/series", metric="calls", side="all", step=60, **span)
    assert both_sides["series"][0]["points"] == [[m0, 100], [m1, 120]]
    web = get(client, "/v1/series", metric="calls", caller="web", step=60, **span)
    assert web["series"][0]["points"] == [[m0, 30], [m1, 60]]
    rows = get(client, "/v1/series", metric="calls", by="version", step=60, format="rows", **span)
    assert {"time": m0, "series": "version=v1", "value": 60} in rows and len(rows) == 4


def check_top_and_services(client: TestClient, t: int) -> None:
    span = {"service": qd.SERVICE, "from": t * 1000, "to": (t + 120) * 1000}
    slow = get(client, "/v1/top/slow-interfaces", **span)["rows"]
    assert [r["key"] for r in slow] == ["GET /cart", "POST /cart"] and slow[0]["latency_ms_p99"] > 90
    assert [r["calls"] for r in slow] == [150, 60]
    erring = get(client, "/v1/top/erroring-instances", n=1, **span)["rows"]
    assert [(r["key"], r["success_rate"]) for r in erring] == [(qd.A, round(171 / 180, 6))]
    callers = get(client, "/v1/top/busy-callers", **span)["rows"]
    assert [(r["key"], r["calls"]) for r in callers] == [("app", 120), ("web", 90)]
    mine = [s for s in get(client, "/v1/services")["services"] if s["service"] == qd.SERVICE]
    assert mine and mine[0]["calls"] == 210 and mine[0]["success_rate"] == round(201 / 210, 6)
    instances = get(client, f"/v1/services/{qd.SERVICE}/instances")["instances"]
    assert [(i["instance"], i["version"], i["calls"]) for i in instances] == [(qd.A, "v1", 180), (qd.B, "v2", 30)]
    interfaces = get(client, f"/v1/services/{qd.SERVICE}/interfaces")["interfaces"]
    assert {i["interface"]: i["calls"] for i in interfaces} == {"GET /cart": 150, "POST /cart": 60}


def check_connections(client: TestClient, t: int) -> None:
    span = {"from": t * 1000, "to": (t + 60) * 1000}
    hosts = {g["labels"]["host"]: g for g in get(client, "/v1/connections", by="host", n=100, **span)["groups"]}
    assert (hosts["qa-h1"]["connections"], hosts["qa-h1"]["tx_bytes"], hosts["qa-h1"]["rx_bytes"]) == (10, 1000, 2000)
    assert hosts["qa-h1"]["duration_ms_p50"] == 5.0
    talkers = get(client, "/v1/connections", by="host,remote", order="bytes", n=100, **span)["groups"]
    mine = [g["labels"] for g in talkers if g["labels"]["host"].startswith("qa-")]
    assert mine == [{"host": "qa-h2", "remote": "10.9.9.8:443"}, {"host": "qa-h1", "remote": "10.9.9.9:5432"}]
    lifetimes = get(client, "/v1/connections/lifetimes", raddr="10.9.9.8", **span)
    assert lifetimes["total"] == 5 and {"le_ms": 2000, "count": 5} in lifetimes["buckets"]
    series = get(client, "/v1/connections/series", host="qa-h1", step=60, **span)
    assert series["series"] == [{"labels": {}, "points": [[t * 1000, 10]]}]


def check_capacity(client: TestClient) -> None:
    plan = get(client, f"/v1/capacity/{qd.SERVICE}")
    got = {i["instance"]: i for i in plan["instances"]}
    a = got[qd.A]
    assert a["cpu_cores"] == 0.5 and a["cpu_limit_cores"] == 2.0 and a["basis"] == "cpu"
    assert a["rps_per_core"] == pytest.approx(a["rps"] / 0.5, rel=1e-3)
    assert a["capacity_rps"] == pytest.approx(a["rps"] / 0.5 * 2.0 * 0.7, rel=1e-3)
    assert a["headroom_pct"] == pytest.approx((1 - 1 / 2.8) * 100, abs=0.2)
    assert plan["capacity_rps"] == pytest.approx(2.8 * plan["rps"], rel=1e-2)
    assert "only 2 minutes" in plan["latency_fit"] and plan["recommendation"]["reason"]
    assert any(s["service"] == qd.SERVICE for s in get(client, "/v1/capacity")["services"])


def check_all(client: TestClient, t: int) -> None:
    check_series(client, t)
    check_top_and_services(client, t)
    check_connections(client, t)
    check_capacity(client)


@pytest.fixture
def loaded_ch(broker: Tansu, ch_store: Store) -> Iterator[tuple[Store, int]]:
    """The known events produced to the broker and loaded by the real loader into ClickHouse 18.16."""
    t = qd.minute_t()
    batches = {"rpc": qd.rpc_events(t), "tcp": qd.tcp_events(t), "load": qd.load_events(t)}
    produce(broker.bootstrap, [(kind, e) for kind, events in batches.items() for e in events])
    with LoaderThread(broker.bootstrap, ch_store):
        for kind, table in (("rpc", "rpc_calls"), ("tcp", "tcp_connections"), ("load", "instance_load")):
            wait_for(lambda k=kind, tb=table: count(ch_store, tb) == len(batches[k]), 60, f"{kind} rows loaded")
    yield ch_store, t


def test_query_api_on_clickhouse_18(loaded_ch: tuple[Store, int]) -> None:
    store, t = loaded_ch
    with client_on(store) as client:
        check_all(client, t)


def test_query_api_on_chdb(chdb_store: Store) -> None:
    t = qd.minute_t()
    qd.insert_direct(chdb_store, "rpc", qd.rpc_events(t))
    qd.insert_direct(chdb_store, "tcp", qd.tcp_events(t))
    qd.insert_direct(chdb_store, "load", qd.load_events(t))
    with client_on(chdb_store) as client:
        check_all(client, t)


@pytest.mark.parametrize(("url", "words"), [
    ("/v1/series?from=2000&to=1000", "from (2000) must be before to (1000)"),
    ("/v1/series?from=0&to=2764800001", "longer than the limit of 31 days"),
    ("/v1/series?from=0&to=86400000&step=1", "step 1 s is too small for this range: 86400 points"),
    ("/v1/series?by=instance,colour", "unknown dimension 'colour' in by; choose from service, interface"),
    ("/v1/series?metric=temperature", "Input should be 'rps'"),
    ("/v1/connections?by=planet", "unknown dimension 'planet' in by; choose from host, cgroup, remote, role"),
    ("/v1/connections/series?step=30", "use a multiple of 60 s"),
    ("/v1/top/loudest-hosts", "Input should be 'slow-interfaces'"),
    ("/v1/capacity/qa.nobody", "no calls of service 'qa.nobody'"),
])
def test_bad_queries_say_what_is_wrong(chdb_store: Store, url: str, words: str) -> None:
    with client_on(chdb_store) as client:
        response = client.get(url)
    assert 400 <= response.status_code < 500 and words in response.text, response.text
    assert "Traceback" not in response.text
