"""A real HAProxy (Debian) behind `svcpulse balancer haproxy`: request shares follow the feed's weights."""

from __future__ import annotations

import argparse
import collections
import http.server
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from balancer.haproxy import RuntimeApiError, parse_servers_state, runtime
from balancer.haproxy import run as sync_run
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import auth, serve, token, weigh_worker, write_users

pytestmark = pytest.mark.services
SERVICE = "legacy.web"


class NameHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.server_address[1].to_bytes(2, "big").hex().encode()  # the backend's port, in hex
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[list[str]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), NameHandler) for _ in range(5)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def haproxy(backends: list[str]) -> Iterator[tuple[str, str]]:
    """HAProxy with one backend of the 5 servers (equal weights), an admin socket; (frontend URL, socket)."""
    if not shutil.which("haproxy"):
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    workdir = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))  # unix socket paths must stay short
    socket_path, port = str(workdir / "admin.sock"), free_port()
    servers = "\n".join(f"  server s{n} {address} weight 100" for n, address in enumerate(backends))
    (workdir / "haproxy.cfg").write_text(f"""global
  stats socket {socket_path} level admin
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend web
  bind 127.0.0.1:{port}
  default_backend app
backend app
  balance roundrobin
  option http-server-close
{servers}
""")
    process = subprocess.Popen(["haproxy", "-f", str(workdir / "haproxy.cfg"), "-db"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(socket_path), 10, "the HAProxy admin socket")
        yield f"http://127.0.0.1:{port}", socket_path
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(socket_path: str) -> bool:
    try:
        return bool(runtime(socket_path, "show servers state app"))
    except RuntimeApiError:
        return False


def shares(frontend: str, backends: list[str], calls: int) -> dict[str, float]:
    by_port = {f"{int(a.rsplit(':', 1)[1]):04x}": a for a in backends}
    with httpx.Client(base_url=frontend, timeout=10) as client:
        counts = collections.Counter(by_port[client.get("/").text] for _ in range(calls))
    return {a: counts[a] / calls for a in backends}


def test_haproxy_request_shares_follow_the_feed(tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer,
                                                ch_store: Store,
                                                 backends: list[str], haproxy: tuple[str, str]) -> None:
    frontend, socket_path = haproxy
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}",
                        users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=0.5,
                        kafka_bootstrap=broker.bootstrap)
    pins = [100, 60, 30, 10]
    with weigh_worker(settings), serve(create_app(settings)) as base, \
            httpx.Client(base_url=base, timeout=30) as api:
        r = api.put(f"/v1/registry/services/{SERVICE}", headers=auth("olga"),
                    json={"kind": "ip", "instances": backends, "why": "web tier behind HAProxy"})
        assert r.status_code == 200, r.text
        for address, weight in zip(backends, pins, strict=False):
            r = api.put(f"/v1/overrides/{SERVICE}/{address}", json={"pinned_weight": weight, "why": "test"},
                        headers=auth("olga"))
            assert r.status_code == 200, r.text
        r = api.put(f"/v1/overrides/{SERVICE}/{backends[4]}", json={"drained": True, "why": "test"},
                    headers=auth("olga"))

        def feed_weights() -> dict[str, int]:
            rows = api.get(f"/v1/weights/{SERVICE}", headers=auth("vic")).json().get("instances", [])
            return {i["instance"]: i["weight"] for i in rows}
        wait_for(lambda: feed_weights() == dict(zip(backends, [*pins, 0], strict=True)), 10, "the pinned feed")

        args = argparse.Namespace(api=base, service=SERVICE, socket=socket_path, backend="app",
                                  token=token("vic"), resync=10.0, once=True)
        assert sync_run(args) == 0
        state = {s.address: s for s in parse_servers_state(runtime(socket_path, "show servers state app"))}
        assert [state[a].weight for a in backends[:4]] == pins and state[backends[4]].admin_state == 0x08

        weights = feed_weights()
        measured = shares(frontend, backends, 2000)
        for address in backends:
            expected = weights[address] / sum(weights.values())
            assert abs(measured[address] - expected) <= 0.05, (address, measured, weights)

        # Un-drain: the server comes back ready with the feed's weight.
        api.delete(f"/v1/overrides/{SERVICE}/{backends[4]}?why=back", headers=auth("olga"))
        wait_for(lambda: feed_weights()[backends[4]] > 0, 10, "the undrained instance in the feed")
        assert sync_run(args) == 0
        back = {s.address: s for s in parse_servers_state(runtime(socket_path, "show servers state app"))}
        assert back[backends[4]].admin_state == 0 and back[backends[4]].weight == feed_weights()[backends[4]]
