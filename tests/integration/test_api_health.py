"""The API skeleton against the real store and broker: health, readiness, metrics, OpenAPI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from pipeline.store import Store, open_store
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.integration.weights_helpers import auth, write_users

pytestmark = pytest.mark.services


def client_for(store_url: str, bootstrap: str, users: str = "") -> TestClient:
    return TestClient(create_app(Settings(store_url=store_url, kafka_bootstrap=bootstrap, users_file=users)))


def test_ready_when_store_and_broker_answer(broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store,
                                           tmp_path: Path) -> None:
    url = f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}"
    with client_for(url, broker.bootstrap, str(write_users(tmp_path / "users.json"))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        ready = client.get("/readyz", headers=auth("vic"))
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "store": "ok", "broker": "ok",
                                                               "loader": "ok"}


def test_not_ready_names_what_is_unreachable_to_authenticated_callers_only(tmp_path: Path) -> None:
    dead_port = free_port()
    users = str(write_users(tmp_path / "users.json"))
    with client_for(f"clickhouse://127.0.0.1:{dead_port}/svcpulse", f"127.0.0.1:{dead_port}", users) as client:
        for headers in ({}, {"Authorization": "Bearer not-a-user"}):
            anonymous = client.get("/readyz", headers=headers)
            assert anonymous.status_code == 503 and anonymous.json() == {"status": "not ready"}
        ready = client.get("/readyz", headers=auth("vic"))
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready"
        assert str(dead_port) in body["store"] and str(dead_port) in body["broker"]
        assert "Traceback" not in ready.text


def test_metrics_expose_only_the_api_series(chdb_store: Store) -> None:
    import pipeline.metrics  # noqa: F401  (the loader's series exist in this process, as in `svcpulse up`)
    import weigh.metrics  # noqa: F401

    with TestClient(create_app(Settings(kafka_bootstrap="127.0.0.1:1"), store=chdb_store)) as client:
        text = client.get("/metrics").text
    for name in ("svcpulse_api_feed_ready 0.0", "svcpulse_api_feed_services 0.0", "svcpulse_api_lease_held 0.0",
                 "svcpulse_api_feed_stale_services", "process_cpu_seconds_total"):
        assert name in text, name
    assert "svcpulse_loader" not in text and "svcpulse_weigh" not in text


def test_metrics_show_the_embedded_store_s_memory_under_its_capped_caches(chdb_store: Store) -> None:
    """chdb's caches default to a server's 5 GiB each; the embedded store caps them (128 MB in all)."""
    caps = dict(chdb_store.execute("SELECT name, value FROM system.server_settings WHERE name IN "
                                   "('mark_cache_size', 'primary_index_cache_size', 'index_mark_cache_size')"))
    assert caps == {"mark_cache_size": str(64 * 2**20), "primary_index_cache_size": str(32 * 2**20),
                    "index_mark_cache_size": str(8 * 2**20)}
    with TestClient(create_app(Settings(kafka_bootstrap="127.0.0.1:1"), store=chdb_store)) as client:
        text = client.get("/metrics").text
    tracked = re.search(r'^svcpulse_store_memory_bytes\{metric="MemoryTracking"\} (\S+)$', text, re.M)
    assert tracked and float(tracked.group(1)) > 0
    assert 'svcpulse_store_memory_bytes{metric="MarkCacheBytes"}' in text
    # chdb's own jemalloc, and glibc malloc's share of the process: a growing RSS is in one or the other
    held = dict(re.findall(r'^svcpulse_(?:store_memory|process_malloc)_bytes\{\w+="(\w+)"\} (\S+)$', text, re.M))
    assert float(held["jemalloc_resident"]) >= float(held["jemalloc_allocated"]) > 0, held
    assert float(held["in_use"]) > 1e6 and "free" in held and "mmapped" in held, held


def test_a_server_store_reports_no_embedded_memory(ch_store: Store) -> None:
    with TestClient(create_app(Settings(kafka_bootstrap="127.0.0.1:1"), store=ch_store)) as client:
        assert "svcpulse_store_memory_bytes" not in client.get("/metrics").text


def test_openapi_is_served(chdb_store: Store) -> None:
    with TestClient(create_app(store=chdb_store)) as client:
        spec = client.get("/openapi.json").json()
        assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
        assert client.get("/docs").status_code == 200


def test_open_store_rejects_a_bad_url() -> None:
    with pytest.raises(ValueError, match="expected clickhouse://host:port/database or chdb:///path"):
        open_store("mysql://x")
