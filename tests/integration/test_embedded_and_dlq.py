"""`svcpulse up` as a user runs it, and the dead-letter export/fix/replay cycle through the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline import events
from pipeline.dlq import read_dead_letters
from pipeline.store import Store
from svcpulse.cli import main
from svcpulse.services import Tansu
from tests.factories import rpc_event
from tests.integration.helpers import LoaderThread, count, produce, wait_for
from tests.otlp.spans import request, resource_spans
from tests.otlp.spans import span as span_of

pytestmark = pytest.mark.services
FREE_OTLP_PORTS = ("--otlp-http-port", "0", "--otlp-grpc-port", "0")  # never the fixed 4318/4317 in tests


def test_up_runs_everything_in_one_process_and_stops_cleanly(tmp_path: Path) -> None:
    # --duration bounds the run if a check hangs; the checks end it earlier with SIGTERM (as a service manager).
    proc = subprocess.Popen([sys.executable, "-m", "svcpulse", "up", "--data-dir", str(tmp_path), "--port", "0",
                             *FREE_OTLP_PORTS, "--duration", "150"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    try:
        _check_the_running_system(proc, tmp_path)
    finally:
        proc.kill()  # a no-op when it stopped by itself; after a failure it must not outlive the test


def _check_the_running_system(proc: subprocess.Popen, tmp_path: Path) -> None:
    base, otlp, pipeline_metrics = _urls(proc)
    wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 30, "ready")
    span = request(resource_spans({"service.name": "otel.cart"}, [span_of("server", attributes={
        "http.request.method": "GET", "http.route": "/cart", "server.address": "10.0.0.5", "server.port": 80})]))
    answer = httpx.post(otlp, content=span.SerializeToString(), headers={"content-type": "application/x-protobuf"})
    assert answer.status_code == 200, answer.text  # the embedded OTLP receiver is open
    wait_for(lambda: "svcpulse_loader_rows_total{table=\"rpc_calls\"}" in httpx.get(pipeline_metrics).text,
             30, "rows loaded")
    assert "svcpulse_weigh_events_total" in httpx.get(pipeline_metrics).text
    assert "svcpulse_loader" not in httpx.get(f"{base}/metrics").text  # the API's /metrics: its own series

    def sick_instance_cut() -> bool:
        # The demo's real fleet is routed by the live feed: the sick checkout instance (8% errors,
        # +120 ms) must be weighted well below its healthy peers.
        feed = httpx.get(f"{base}/v1/weights/shop.checkout", timeout=2).json()
        weights = sorted(instance["weight"] for instance in feed.get("instances", []))  # 404 until seen
        return len(weights) == 3 and weights[0] * 5 <= weights[1]

    wait_for(sick_instance_cut, 40, "the feed to cut the sick instance")
    wait_for(lambda: _demo_map_shows_the_sick_checkout(base), 40, "the map to show checkout degraded, its edge red")
    broker_pids = _broker_pids(tmp_path)
    if os.geteuid() == 0:
        wait_for(lambda: httpx.get(f"{base}/v1/connections", timeout=5).json().get("groups"), 30, "eBPF connections")

        def legacy_weighted_from_tcp() -> bool:
            # legacy.web runs no svcpulse code: its feed exists only through its callers' connections.
            feed = httpx.get(f"{base}/v1/weights/legacy.web", timeout=2).json()
            rows = feed.get("instances", [])
            return len(rows) == 3 and all(r["signal"] == "tcp" and r["reason"].startswith("from TCP: ") and
                                          " connections ok " in r["reason"] for r in rows)

        wait_for(legacy_weighted_from_tcp, 30, "legacy.web weighted from its connections")
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    loaded = int(re.search(r"stopped; (\d+) rows loaded", rest).group(1))  # type: ignore[union-attr]
    assert loaded > 100
    assert not [pid for pid in broker_pids if Path(f"/proc/{pid}").exists()], "a broker process was not stopped"


def _demo_map_shows_the_sick_checkout(base: str) -> bool:
    """GET /v1/map over the demo (issue 17): frontend -> checkout and catalog; the sick checkout instance
    makes checkout degraded (its feed) and the frontend's edge to it red (its calls fail there)."""
    answer = httpx.get(f"{base}/v1/map", params={"from": int(time.time() * 1000) - 300_000}, timeout=10).json()
    edges = {(e["source"], e["target"]): e for e in answer["edges"]}
    nodes = {n["id"]: n for n in answer["nodes"]}
    to_checkout = edges.get(("svc:shop.frontend", "svc:shop.checkout"))
    return (("svc:shop.frontend", "svc:shop.catalog") in edges and to_checkout is not None
            and to_checkout["color"] == "#f2495c" and nodes["svc:shop.checkout"]["state"] == "degraded")


def _broker_pids(data_dir: Path) -> list[int]:
    """The broker's processes: the front at the fixed address and the generation behind it."""
    files = [*(data_dir / "tansu").glob("tansu*.pid"), data_dir / "tansu" / "broker-front.pid"]
    pids = [int(path.read_text().split()[0]) for path in files if path.exists()]
    assert len(pids) == 2, pids
    return pids


def _urls(proc: subprocess.Popen) -> tuple[str, str, str]:
    """The console's base URL, the OTLP/HTTP traces URL and the loader's + weigh worker's metrics URL,
    as `svcpulse up` prints them."""
    assert proc.stdout is not None
    base = otlp = ""
    for line in proc.stdout:
        if match := re.search(r"OTLP in\s+(http://\S+/v1/traces)", line):
            otlp = match.group(1)
        if match := re.search(r"web console\s+(http://\S+)/", line):
            base = match.group(1)
        if match := re.search(r"(http://\S+/metrics) \(loader, weigh\)", line):
            return base, otlp, match.group(1)
    raise AssertionError("svcpulse up ended before printing the console and metrics URLs")


def test_kill_9_of_up_takes_its_broker_along(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "svcpulse", "up", "--data-dir", str(tmp_path), "--port", "0",
                             *FREE_OTLP_PORTS, "--no-demo", "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _urls(proc)
        broker_pids = _broker_pids(tmp_path)
        assert all(Path(f"/proc/{pid}").exists() for pid in broker_pids)
    finally:
        proc.kill()
        proc.wait()

    def gone(pid: int) -> bool:
        return not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()

    wait_for(lambda: all(gone(pid) for pid in broker_pids), 10, "the broker processes to die with their parent")


def test_dead_letters_can_be_exported_fixed_and_replayed(broker: Tansu, ch_store: Store, tmp_path: Path) -> None:
    broken = [json.dumps({**rpc_event(i), "latency_ms": f"{i}ms"}).encode() for i in range(50)]
    produce(broker.bootstrap, [("rpc", raw) for raw in broken] + [("rpc", rpc_event(i)) for i in range(100, 200)])
    with LoaderThread(broker.bootstrap, ch_store):
        wait_for(lambda: count(ch_store, "rpc_calls") == 100, 60, "the good rows")
        # Dead letters are published after the insert and before the commit: wait for them too.
        wait_for(lambda: len(list(read_dead_letters(broker.bootstrap, None))) == 50, 30, "the dead letters")
        export = tmp_path / "dead.jsonl"
        assert main(["dlq", "export", "--bootstrap", broker.bootstrap, "--out", str(export)]) == 0
        dead = [json.loads(line) for line in export.read_text().splitlines()]
        assert len(dead) == 50
        assert dead[0]["reason"] == "field 'latency_ms': expected number, got string"
        fixed = []
        for event in dead:
            payload = json.loads(event["payload"])
            payload["latency_ms"] = float(payload["latency_ms"].removesuffix("ms"))
            fixed.append(json.dumps({**event, "payload": json.dumps(payload)}))
        fixed[0] = json.dumps({**dead[0]})  # left unfixed: must be reported, not loaded
        export.write_text("\n".join(fixed) + "\n")
        assert main(["dlq", "replay", "--bootstrap", broker.bootstrap, "--from-file", str(export)]) == 0
        wait_for(lambda: count(ch_store, "rpc_calls") == 149, 60, "the replayed rows")
        time.sleep(1)
    assert count(ch_store, "rpc_calls") == 149
    latencies = {row[0] for row in ch_store.execute("SELECT latency_ms FROM rpc_calls WHERE ts_ms < %(t)s",
                                                    {"t": rpc_event(50)["ts_ms"]})}
    assert latencies == {float(i) for i in range(1, 50)}
    assert events.validate("rpc", rpc_event(1))
