"""`svcpulse up` as a user runs it, and the dead-letter export/fix/replay cycle through the CLI."""

from __future__ import annotations

import json
import os
import re
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
    proc = subprocess.Popen([sys.executable, "-m", "svcpulse", "up", "--data-dir", str(tmp_path), "--port", "0",
                             *FREE_OTLP_PORTS, "--duration", "45"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    try:
        _check_the_running_system(proc, tmp_path)
    finally:
        proc.kill()  # a no-op when it stopped by itself; after a failure it must not outlive the test


def _check_the_running_system(proc: subprocess.Popen, tmp_path: Path) -> None:
    base, otlp = _console_url(proc)
    wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 30, "ready")
    span = request(resource_spans({"service.name": "otel.cart"}, [span_of("server", attributes={
        "http.request.method": "GET", "http.route": "/cart", "server.address": "10.0.0.5", "server.port": 80})]))
    answer = httpx.post(otlp, content=span.SerializeToString(), headers={"content-type": "application/x-protobuf"})
    assert answer.status_code == 200, answer.text  # the embedded OTLP receiver is open
    wait_for(lambda: "svcpulse_loader_rows_total{table=\"rpc_calls\"}" in httpx.get(f"{base}/metrics").text,
             30, "rows loaded")

    def sick_instance_cut() -> bool:
        # The demo's real fleet is routed by the live feed: the sick checkout instance (8% errors,
        # +120 ms) must be weighted well below its healthy peers.
        feed = httpx.get(f"{base}/v1/weights/shop.checkout", timeout=2).json()
        weights = sorted(instance["weight"] for instance in feed.get("instances", []))  # 404 until seen
        return len(weights) == 3 and weights[0] * 5 <= weights[1]

    wait_for(sick_instance_cut, 40, "the feed to cut the sick instance")
    broker_pid = int((tmp_path / "tansu" / "tansu.pid").read_text().split()[0])
    if os.geteuid() == 0:
        wait_for(lambda: httpx.get(f"{base}/v1/connections", timeout=5).json().get("groups"), 30, "eBPF connections")
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    loaded = int(re.search(r"stopped; (\d+) rows loaded", rest).group(1))  # type: ignore[union-attr]
    assert loaded > 100
    assert not Path(f"/proc/{broker_pid}").exists(), "the broker child process was not stopped"


def _console_url(proc: subprocess.Popen) -> tuple[str, str]:
    """The console's base URL and the OTLP/HTTP traces URL, as `svcpulse up` prints them."""
    assert proc.stdout is not None
    otlp = ""
    for line in proc.stdout:
        if match := re.search(r"OTLP in\s+(http://\S+/v1/traces)", line):
            otlp = match.group(1)
        if match := re.search(r"web console\s+(http://\S+)/", line):
            return match.group(1), otlp
    raise AssertionError("svcpulse up ended before printing the console URL")


def test_kill_9_of_up_takes_its_broker_along(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "svcpulse", "up", "--data-dir", str(tmp_path), "--port", "0",
                             *FREE_OTLP_PORTS, "--no-demo", "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _console_url(proc)
        broker_pid = int((tmp_path / "tansu" / "tansu.pid").read_text().split()[0])
        assert Path(f"/proc/{broker_pid}").exists()
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not Path(f"/proc/{broker_pid}/cmdline").exists() or
             not Path(f"/proc/{broker_pid}/cmdline").read_bytes(), 10, "the broker to die with its parent")


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
