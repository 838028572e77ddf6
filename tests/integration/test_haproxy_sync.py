"""A real HAProxy (Debian) behind `svcpulse balancer haproxy`: request shares follow the feed's weights."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from balancer.haproxy import parse_servers_state, runtime
from balancer.haproxy import run as sync_run
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu
from tests.integration import balancer_rigs as rigs
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import auth, serve, token, weigh_worker, write_users

pytestmark = pytest.mark.services
SERVICE = "legacy.web"


@pytest.fixture
def backends() -> Iterator[list[str]]:
    with rigs.backends(5) as addresses:
        yield addresses


@pytest.fixture
def haproxy(backends: list[str]) -> Iterator[tuple[str, str]]:
    """HAProxy with one backend of the 5 servers (equal weights), an admin socket; (frontend URL, socket)."""
    if not shutil.which("haproxy"):
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    with rigs.haproxy(backends) as front:
        yield front.url, front.adapter.socket_path  # type: ignore[attr-defined]


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
        measured = rigs.shares(frontend, backends, 2000)
        for address in backends:
            expected = weights[address] / sum(weights.values())
            assert abs(measured[address] - expected) <= 0.05, (address, measured, weights)

        # Un-drain: the server comes back ready with the feed's weight.
        api.delete(f"/v1/overrides/{SERVICE}/{backends[4]}?why=back", headers=auth("olga"))
        wait_for(lambda: feed_weights()[backends[4]] > 0, 10, "the undrained instance in the feed")
        assert sync_run(args) == 0
        back = {s.address: s for s in parse_servers_state(runtime(socket_path, "show servers state app"))}
        assert back[backends[4]].admin_state == 0 and back[backends[4]].weight == feed_weights()[backends[4]]
