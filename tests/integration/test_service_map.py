"""GET /v1/map on both engines (ClickHouse 18.16 and chdb): calls and callers' connections loaded into
the raw tables become nodes and edges through the views (rpc_edges_1m, tcp_health_1m, workloads_1m)
and api/queries/map.py; a service's state is its weight feed's (the API's feed view, filled here by
hand: the feed's own path through a weigh worker is covered by tests/browser/test_console_map.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.queries import map as mq
from api.timerange import Window
from core.settings import Settings
from pipeline.batch import columns
from pipeline.store import Store
from pipeline.transform import COLUMNS, Message, to_row
from tests.factories import rpc_event, tcp_event

pytestmark = pytest.mark.services


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("ch_store" if request.param == "clickhouse-18.16" else "chdb_store")


def insert(store: Store, kind: str, table: str, events: list[dict[str, Any]]) -> None:
    rows = [to_row(kind, e, Message(f"svcpulse.{kind}", 0, n, e["ts_ms"], None, b"")) for n, e in enumerate(events)]
    store.insert(table, COLUMNS[kind], columns(rows))


def calls(ts_ms: int, caller: str, callee: str, instance: str, n: int, failed: int = 0, side: str = "client",
          cgroup: str = "", latency_ms: float = 12.0) -> list[dict[str, Any]]:
    return [rpc_event(i, ts_ms=ts_ms, caller=caller, callee=callee, instance=instance, side=side, cgroup=cgroup,
                      workload="", workload_kind="", status="error" if i < failed else "ok", latency_ms=latency_ms)
            for i in range(n)]


def connections(ts_ms: int, cgroup: str, address: str, n: int, refused: int = 0,
                retransmits: int = 0) -> list[dict[str, Any]]:
    raddr, port = address.rsplit(":", 1)
    return [tcp_event(i, ts_ms=ts_ms, role="client", cgroup=cgroup, workload="", workload_kind="", raddr=raddr,
                      rport=int(port), family=4, outcome="refused" if i < refused else "ok",
                      retransmits=retransmits if i == refused else 0, resets_in=0, resets_out=0)
            for i in range(n)]


@pytest.fixture
def shop(store: Store) -> Iterator[tuple[TestClient, str, int]]:
    """A small fleet under a name of its own (chdb is shared by the test session): frontend calls checkout
    (one of two instances fails a quarter of its calls) and catalog; unnamed callers call catalog; the
    frontend's cgroup connects to catalog's instance and to a database no service owns; a batch job's
    cgroup (no svcpulse service in it) connects to catalog too."""
    p = f"m{uuid.uuid4().hex[:6]}"
    now_ms = int(time.time() * 1000)
    ts = now_ms - 90_000
    front_cg, batch_cg = f"/system.slice/{p}-frontend.service", f"/system.slice/{p}-report.service"
    insert(store, "rpc", "rpc_calls",
           calls(ts, f"{p}.frontend", f"{p}.checkout", "10.61.0.1:8080", 60, failed=0, cgroup=front_cg)
           + calls(ts, f"{p}.frontend", f"{p}.checkout", "10.61.0.2:8080", 40, failed=10, cgroup=front_cg,
                   latency_ms=140.0)
           + calls(ts, f"{p}.frontend", f"{p}.checkout", "10.61.0.2:8080", 40, failed=40, side="server")
           + calls(ts, f"{p}.frontend", f"{p}.catalog", "10.61.0.3:8080", 50, cgroup=front_cg)
           + calls(ts, "", f"{p}.catalog", "10.61.0.3:8080", 30, side="server"))
    insert(store, "tcp", "tcp_connections",
           connections(ts, front_cg, "10.61.0.3:8080", 30, refused=3, retransmits=5)
           + connections(ts, front_cg, "10.99.0.1:5432", 25)
           + connections(ts, batch_cg, "10.61.0.3:8080", 22))
    app = create_app(Settings(feed_open=True, kafka_bootstrap="127.0.0.1:1"), store=store)
    with TestClient(app) as api:
        app.state.weights.feeds[f"{p}.checkout"] = {"service": f"{p}.checkout", "mode": "normal", "instances": [
            {"instance": "10.61.0.1:8080", "state": "healthy", "weight": 100},
            {"instance": "10.61.0.2:8080", "state": "degraded", "weight": 20, "reason": "errors 25%"}]}
        yield api, p, now_ms


def scoped(answer: dict[str, Any], p: str) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    nodes = {n["id"]: n for n in answer["nodes"] if p in n["id"] or n["id"].startswith(("ext:", "group:", "ep:"))}
    edges = {(e["source"], e["target"]): e for e in answer["edges"] if p in e["id"]}
    return nodes, edges


def test_the_map_has_services_workloads_endpoints_and_their_health(shop: tuple[TestClient, str, int]) -> None:
    api, p, now_ms = shop
    answer = api.get("/v1/map", params={"from": now_ms - 600_000, "to": now_ms, "limit": 500}).json()
    nodes, edges = scoped(answer, p)
    front, checkout, catalog = f"svc:{p}.frontend", f"svc:{p}.checkout", f"svc:{p}.catalog"
    assert set(edges) == {(front, checkout), (front, catalog), ("ext:unknown", catalog), (front, "ep:10.99.0.1:5432"),
                          (f"wl:{p}-report.service", catalog)}

    sick = edges[(front, checkout)]  # the caller's measurement wins over the callee's (which saw 40 of 40 fail)
    assert (sick["calls"], sick["failures"], sick["measured_by"]) == (100, 10, "client")
    assert sick["worst_instance"] == {"instance": "10.61.0.2:8080", "calls": 40, "failures": 10}
    assert sick["health"] == "critical" and sick["color"] == "#f2495c"
    assert sick["latency_ms_p99"] == pytest.approx(140.0, rel=0.05) and sick["protocols"] == ["rpc"]

    both = edges[(front, catalog)]  # calls and the same cgroup's connections to catalog's instance: one edge
    assert (both["calls"], both["tcp_attempts"], both["tcp_failed"], both["tcp_retransmits"]) == (50, 30, 3, 5)
    assert both["protocols"] == ["rpc", "tcp"] and both["health"] == "critical"  # 10% of connections refused
    assert any("connections" in why for why in both["why"])
    database = edges[(front, "ep:10.99.0.1:5432")]
    assert (database["calls"], database["tcp_attempts"], database["health"]) == (0, 25, "healthy")

    assert nodes[checkout]["state"] == "degraded" and nodes[checkout]["color"] == "#ff9830"
    assert "10.61.0.2:8080 degraded: errors 25%" in nodes[checkout]["state_why"]
    assert nodes[checkout]["calls"] == 40  # what checkout measured itself
    assert nodes[catalog]["state"] == "unknown"  # no feed
    assert nodes[catalog]["calls"] == 30  # its own measurement only (the frontend's 50 are on their edge)
    assert nodes[catalog]["tcp_rate"] > 0 and nodes[catalog]["tcp_success_rate"] == pytest.approx(49 / 52, abs=1e-4)
    assert nodes[front]["workloads"] == [{"name": f"{p}-frontend.service", "kind": "unit"}]
    assert nodes[f"wl:{p}-report.service"]["kind"] == "workload"
    assert nodes["ep:10.99.0.1:5432"]["kind"] == "endpoint"


def test_limit_groups_the_rest_and_grafana_gets_node_graph_frames(shop: tuple[TestClient, str, int]) -> None:
    api, p, now_ms = shop
    window = {"from": now_ms - 600_000, "to": now_ms}
    full = api.get("/v1/map", params={**window, "limit": 500}).json()
    small = api.get("/v1/map", params={**window, "limit": 1}).json()
    one_by_one = [e for e in small["edges"] if e["source"] != "group:others"]
    assert len(one_by_one) == 1 and one_by_one[0]["health"] == "critical"  # unhealthy edges are kept first
    grouped = [e for e in small["edges"] if e["source"] == "group:others"]
    assert sum(e["grouped_edges"] for e in grouped) + small["omitted"]["edges"] == len(full["edges"]) - 1
    total = sum(e["rps"] for e in small["edges"]) + small["omitted"]["rps"]
    # Nothing lost, only grouped. Each rps is rounded on the wire, so the sums may differ by those roundings
    # (CI saw 4.835 vs 4.836): at most half a unit of the last place per value summed.
    rounding = 0.0005 * (len(small["edges"]) + len(full["edges"]) + 1)
    assert abs(total - sum(e["rps"] for e in full["edges"])) <= rounding, (total, full["edges"])

    tens = now_ms // 600_000 * 600_000  # a range of whole ten minutes: the *_10m tiers alone
    for other in ({"from": now_ms - 8 * 3_600_000, "to": now_ms}, {"from": tens - 1_200_000, "to": tens + 600_000}):
        answer = api.get("/v1/map", params={**other, "limit": 500}).json()  # hours, ten minutes, minutes
        assert {k: (e["calls"], e["tcp_attempts"]) for k, e in scoped(answer, p)[1].items()} == {
            k: (e["calls"], e["tcp_attempts"]) for k, e in scoped(full, p)[1].items()}, other

    frames = api.get("/v1/map", params={**window, "limit": 500, "format": "grafana"}).json()
    assert set(frames) == {"nodes", "edges"}
    node = {n["id"]: n for n in frames["nodes"]}[f"svc:{p}.checkout"]
    assert {"id", "title", "subtitle", "mainstat", "secondarystat", "arc__success", "arc__failed", "color"} <= set(node)
    assert node["color"] == "#ff9830" and node["arc__success"] + node["arc__failed"] + node["arc__idle"] == 1
    edge = {e["id"]: e for e in frames["edges"]}[f"svc:{p}.frontend->svc:{p}.checkout"]
    assert (edge["source"], edge["target"], edge["color"]) == (f"svc:{p}.frontend", f"svc:{p}.checkout", "#f2495c")
    assert edge["mainstat"].endswith("req/s") and "p99" in edge["secondarystat"]


def test_latencies_are_read_for_what_is_drawn_and_the_rest_keeps_its_counts(
        shop: tuple[TestClient, str, int], store: Store) -> None:
    api, p, now_ms = shop
    front, checkout, catalog, search = (f"{p}.{name}" for name in ("frontend", "checkout", "catalog", "search"))
    # A quiet edge 2 of whose 30 calls took 1.5 s: p99 over a second, critical from its counts alone.
    insert(store, "rpc", "rpc_calls", calls(now_ms - 90_000, front, search, "10.61.0.9:8080", 28, latency_ms=20.0)
           + calls(now_ms - 90_000, front, search, "10.61.0.9:8080", 2, latency_ms=1500.0))
    window = {"from": now_ms - 600_000, "to": now_ms}
    full = scoped(api.get("/v1/map", params={**window, "limit": 500}).json(), p)[1]
    quiet = full[f"svc:{front}", f"svc:{search}"]
    assert (quiet["calls"], quiet["slow_calls"], quiet["health"]) == (30, 2, "critical")
    assert "p99 over 1 s: 6.7% of calls took longer (2 of 30)" in quiet["why"]
    assert quiet["latency_ms_p99"] == pytest.approx(1500.0, rel=0.05)

    # Three hours ago (chdb is shared by the session: no other test's calls there), the map of one edge:
    # the busiest critical one drawn, the two other callers of its target grouped: counts, no latency.
    past = now_ms - 3 * 3_600_000
    x = f"{p}.x"
    insert(store, "rpc", "rpc_calls", calls(past, f"{p}.a", x, "10.61.1.1:8080", 1000, failed=100, latency_ms=200.0)
           + calls(past, f"{p}.b", x, "10.61.1.1:8080", 50, latency_ms=10.0)
           + calls(past, f"{p}.c", x, "10.61.1.1:8080", 30, latency_ms=10.0, side="server"))
    answer = api.get("/v1/map", params={"from": past - 300_000, "to": past + 300_000, "limit": 1}).json()
    [drawn] = [e for e in answer["edges"] if e["source"] != "group:others"]
    assert (drawn["source"], drawn["target"], drawn["calls"]) == (f"svc:{p}.a", f"svc:{x}", 1000)
    assert drawn["latency_ms_p99"] == pytest.approx(200.0, rel=0.05)
    [group] = [e for e in answer["edges"] if e["source"] == "group:others"]
    assert (group["target"], group["grouped_edges"], group["calls"]) == (f"svc:{x}", 2, 80)
    assert group["latency_ms_p50"] is None and group["latency_ms_p99"] is None
    node = {n["id"]: n for n in answer["nodes"]}[f"svc:{x}"]  # its own (server) side: c's 30 calls
    assert (node["calls"], node["latency_ms_p99"]) == (30, pytest.approx(10.0, rel=0.05))

    # The query merges digests for the pairs and callees asked only; a callee's covers all its callers.
    by_pair, by_callee = mq.latencies(store, Window(now_ms // 1000 - 600, now_ms // 1000, 60),
                                      {(front, checkout, "client")}, {(catalog, "server"), (search, "client")})
    assert set(by_pair) == {(front, checkout, "client")} and set(by_callee) == {(catalog, "server"), (search, "client")}
    assert by_pair[front, checkout, "client"][1] == pytest.approx(140.0, rel=0.05)
    assert by_callee[catalog, "server"][1] == pytest.approx(12.0, rel=0.05)
    assert by_callee[search, "client"][1] == pytest.approx(1500.0, rel=0.05)


def test_a_bad_range_is_a_422_with_a_message(shop: tuple[TestClient, str, int]) -> None:
    api, _, now_ms = shop
    backwards = api.get("/v1/map", params={"from": now_ms, "to": now_ms - 60_000})
    assert backwards.status_code == 422 and "from" in backwards.json()["detail"]
    assert api.get("/v1/map", params={"from": "yesterday"}).status_code == 422
    assert api.get("/v1/map", params={"format": "svg"}).status_code == 422
