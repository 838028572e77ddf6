"""Connection health in the store, on both engines (ClickHouse 18.16 and chdb): the raw columns, the
tcp_health_1m rollup fed by its view, and the queries of api/queries/tcp_health.py over them."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.queries import registry as reg
from api.queries import tcp_health as th
from api.timerange import Window
from core.settings import Settings
from pipeline.batch import columns
from pipeline.store import Store
from pipeline.transform import COLUMNS, Message, to_row
from tests.factories import tcp_event

pytestmark = pytest.mark.services


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("ch_store" if request.param == "clickhouse-18.16" else "chdb_store")


def insert(store: Store, events: list[dict]) -> None:
    rows = [to_row("tcp", e, Message("svcpulse.tcp", 0, n, e["ts_ms"], None, b""))
            for n, e in enumerate(events)]
    store.insert("tcp_connections", COLUMNS["tcp"], columns(rows))


def client(now_ms: int, raddr: str, rport: int, outcome: str = "ok", **changes: object) -> dict:
    ok = outcome == "ok"
    health = {"connect_ms": 0.4 if ok else 0.0, "srtt_us": 300 if ok else 0, "retransmits": 0,
              "resets_in": int(outcome in ("refused", "reset")), **changes}
    return tcp_event(0, ts_ms=now_ms, role="client", raddr=raddr, rport=rport, cgroup="/shop/frontend",
                     outcome=outcome, **health)


def test_windows_and_series_from_client_connections(store: Store) -> None:
    port = 20000 + int(time.time() * 1000) % 20000  # chdb is shared by the session: a port of our own
    now_ms = int(time.time() * 1000)
    good, bad, six = "10.7.0.1", "10.7.0.2", "fd00::7"
    events = [client(now_ms - 2000, good, port) for _ in range(40)]
    events += [client(now_ms - 2000, bad, port, "refused") for _ in range(30)]
    events += [client(now_ms - 2000, bad, port, "ok", connect_ms=1000.5, retransmits=2) for _ in range(10)]
    events += [client(now_ms - 1000, six, port, "timeout", retransmits=3), client(now_ms - 1000, six, port, "aborted")]
    events += [client(now_ms - 60_000, good, port, "refused")]  # outside the window, inside the rollup
    events += [{**client(now_ms, good, port), "role": "server"}, client(now_ms, good, port + 1)]  # not counted
    insert(store, events)

    windows = th.tcp_windows(store, now_ms, 10, {port})
    assert set(windows) == {f"{good}:{port}", f"{bad}:{port}", f"[{six}]:{port}"}
    assert (windows[f"{good}:{port}"].attempts, windows[f"{good}:{port}"].failures) == (40, 0)
    assert abs(windows[f"{good}:{port}"].connect_ms_p50 - 0.4) < 1e-6
    assert abs(windows[f"{good}:{port}"].srtt_ms_p50 - 0.3) < 1e-6
    sick = windows[f"{bad}:{port}"]
    assert (sick.attempts, sick.refused, sick.retransmits, sick.success_rate) == (40, 30, 20, 0.25)
    assert sick.connect_ms_p99 == pytest.approx(1000.5)  # failed connects have no handshake time
    v6 = windows[f"[{six}]:{port}"]
    assert (v6.timeouts, v6.aborted, v6.failures, v6.connect_ms_p50) == (1, 1, 1, 0.0)

    assert th.tcp_windows(store, now_ms, 10, set()) == {}

    start = (now_ms // 1000 - 120) // 60 * 60
    series = th.health_series(store, [f"{good}:{port}", f"{bad}:{port}"], Window(start, start + 240, 60))
    good_points = series[f"{good}:{port}"]
    assert sum(p["attempts"] for p in good_points) == 41 and sum(p["refused"] for p in good_points) == 1
    bad_total = {k: sum(p[k] for p in series[f"{bad}:{port}"]) for k in ("attempts", "refused", "retransmits")}
    assert bad_total == {"attempts": 40, "refused": 30, "retransmits": 20}
    assert max(p["connect_ms_p99"] for p in series[f"{bad}:{port}"]) == pytest.approx(1000.5, rel=0.01)


def test_the_api_serves_each_instances_latest_figures_and_series(store: Store) -> None:
    port = 20000 + (int(time.time() * 1000) + 7) % 20000
    now_ms = int(time.time() * 1000)
    up, down, named = f"10.8.0.1:{port}", f"10.8.0.2:{port}", f"db.internal:{port}"
    service = f"legacy-{port}"
    stamp = {"source": "api", "deleted": 0, "changed_by": "test", "changed_ms": now_ms}
    reg.write_services(store, [{"service": service, "kind": "ip", "description": "", "signal": "tcp", **stamp}])
    reg.write_instances(store, [{"service": service, "instance": i, "static_weight": 100, "version": "", "enabled": 1,
                                 **stamp} for i in (up, down, named)])
    insert(store, [client(now_ms - 1000, "10.8.0.1", port) for _ in range(12)]
           + [client(now_ms - 1000, "10.8.0.2", port, "refused") for _ in range(5)]
           + [client(now_ms - 1000, "10.8.0.2", port, "reset")])
    with TestClient(create_app(Settings(feed_open=True, kafka_bootstrap="127.0.0.1:1"), store=store)) as api:
        answer = api.get(f"/v1/services/{service}/connections", params={"step": 60}).json()
        assert answer["window_s"] == 10 and answer["step_s"] == 60
        rows = {r["instance"]: r for r in answer["instances"]}
        assert set(rows) == {up, down}  # a DNS name cannot match what the kernel saw
        assert rows[up]["latest"]["attempts"] == 12 and rows[up]["latest"]["ok_rate"] == 1.0
        assert rows[up]["latest"]["srtt_ms_p50"] == pytest.approx(0.3)
        latest = rows[down]["latest"]
        assert (latest["attempts"], latest["refused"], latest["resets"], latest["ok_rate"]) == (6, 5, 1, 0.0)
        points = rows[down]["series"]
        assert sum(p["attempts"] for p in points) == 6 and points[-1]["ok_rate"] == 0.0
        bad = api.get(f"/v1/services/{service}/connections", params={"step": 30})
        assert bad.status_code == 422 and "per-minute rollup" in bad.json()["detail"]
