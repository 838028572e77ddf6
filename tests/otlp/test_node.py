"""A Node.js fleet instrumented with the OpenTelemetry Node SDK (@opentelemetry/sdk-node from the npm
registry, installed by scripts/bootstrap.sh) -> OTLP (http/protobuf, http/json and gRPC exporters) -> `svcpulse otlp`
-> Kafka -> loader -> ClickHouse 18.16 -> the weight feed -> balancer.client.Balancer driving the traffic.
The calls appear in rpc_calls, and an instance made to fail 50% of its calls loses >= 90% of its share
within 10 s."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from balancer.client import WeightFeedClient
from core.settings import Settings
from otlp import command
from otlp.server import Receiver
from pipeline.store import Store
from svcpulse.fleet import Traffic
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.integration.helpers import LoaderThread, wait_for
from tests.integration.weights_helpers import auth, serve, weigh_worker, write_users

pytestmark = pytest.mark.services
SERVICE = "shop.node"
NODE_DIR = Path(__file__).parent / "node"


def _require_node() -> None:
    missing = [what for what, ok in (("node", shutil.which("node")),
                                     ("the npm packages", (NODE_DIR / "node_modules/@opentelemetry/sdk-node").is_dir()))
               if not ok]
    if missing:
        message = f"{' and '.join(missing)} missing: run scripts/bootstrap.sh (it installs Node.js and runs npm ci)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


@contextmanager
def node_fleet(receiver: Receiver, protocols: list[str]) -> Iterator[list[str]]:
    """One `node service.js` per protocol; yields their addresses once each listens."""
    processes, addresses = [], []
    try:
        for protocol in protocols:
            port = free_port()
            endpoint = receiver.http_url if protocol.startswith("http/") else f"http://{receiver.grpc_target}"
            env = {**os.environ, "PORT": str(port), "OTLP_PROTOCOL": protocol, "OTEL_SERVICE_NAME": SERVICE,
                   "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.0.0",
                   "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
            processes.append(subprocess.Popen(["node", "service.js"], cwd=NODE_DIR, env=env, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            addresses.append(f"127.0.0.1:{port}")
        for process in processes:
            line = process.stdout.readline() if process.stdout else ""
            assert line.startswith("listening"), f"node service did not start: {line}"
        yield addresses
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=20)


def shares(traffic: Traffic, since: float, until: float, instance: str) -> float:
    calls = traffic.between(since, until)
    assert len(calls) >= 100, f"too little traffic to measure: {len(calls)} calls"
    return Traffic.share(calls, instance)


def test_node_calls_reach_rpc_calls_and_the_feed_cuts_an_instance_failing_half_its_calls(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    _require_node()
    settings = Settings(kafka_bootstrap=broker.bootstrap, otlp_open=True, otlp_http_port=0, otlp_grpc_port=0,
                        otlp_spool_dir=str(tmp_path / "spool"), feed_open=True,
                        users_file=str(write_users(tmp_path / "users.json")),
                        store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}")
    with command.embedded(settings) as receiver, LoaderThread(broker.bootstrap, ch_store), \
            node_fleet(receiver, ["http/protobuf", "grpc", "http/json", "grpc"]) as addresses:
        with WeightFeedClient("http://127.0.0.1:1", SERVICE, fallback=addresses) as idle, Traffic(idle, threads=8):
            wait_for(lambda: ch_store.execute("SELECT uniqExact(instance) FROM rpc_calls")[0][0] == 4, 60,
                     "calls of all 4 Node instances in ClickHouse")
        rows = ch_store.query("SELECT DISTINCT caller, callee, interface, side, status, code, version, host "
                              "FROM rpc_calls")
        assert rows == [{"caller": "", "callee": SERVICE, "interface": "GET /work", "side": "server", "status": "ok",
                         "code": "200", "version": "1.0.0", "host": socket.gethostname()}]
        assert {r["instance"] for r in ch_store.query("SELECT DISTINCT instance FROM rpc_calls")} == set(addresses)

        failing = addresses[1]  # exports over gRPC
        with weigh_worker(settings, ch_store), serve(create_app(settings)) as api:
            # registered, as an operator does: the feed routes registered instances (docs/weights-api.md)
            httpx.put(f"{api}/v1/registry/services/{SERVICE}", headers=auth("olga"), timeout=10,
                      json={"instances": addresses, "why": "the Node fleet"}).raise_for_status()
            with WeightFeedClient(api, SERVICE, wait_s=5, fallback=addresses) as feed, \
                    Traffic(feed, threads=8) as traffic:
                # The service was seen before it was registered: its first feed may list no instance yet.
                def lists_all() -> bool:
                    received = feed.latest()  # as received: current() falls back to the list given above
                    return received is not None and set(received.weights) == set(addresses)
                wait_for(lists_all, 60, "the 4 registered instances in the feed")
                time.sleep(8)
                before = shares(traffic, time.monotonic() - 7, time.monotonic(), failing)
                assert 0.15 < before < 0.35, before
                httpx.post(f"http://{failing}/fault", params={"error_rate": 0.5}, timeout=5).raise_for_status()
                t0 = time.monotonic()
                time.sleep(16)  # long windows: a loaded machine serves few calls per second
                cut = shares(traffic, t0 + 10, t0 + 16, failing)
                assert cut <= before / 10, (before, cut, feed.current())
                print(f"share of the failing Node instance: {before:.3f} before, {cut:.4f} 10-16 s after")
        failed = ch_store.execute("SELECT count() FROM rpc_calls WHERE instance = %(i)s AND code = '503' "
                                  "AND status = 'error'", {"i": failing})[0][0]
        assert failed > 0
