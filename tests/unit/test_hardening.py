"""API request limits: body and query caps, the write rate limit, CORS off by default."""

from __future__ import annotations

import gc
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.auth import hash_token
from api.hardening import LimitsMiddleware, TokenBuckets
from api.main import create_app
from core.settings import Settings
from pipeline.store import Store, open_store
from svcpulse.embedded import limit_malloc_arenas


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    # The limits refuse requests before any handler, so a store that is never reached will do.
    yield open_store("clickhouse://127.0.0.1:9/svcpulse")


@pytest.fixture
def users(tmp_path: Path) -> str:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [
        {"name": name, "roles": ["viewer", "operator", "admin"], "role": role, "token_sha256": hash_token(f"t-{name}")}
        for name, role in (("olga", "operator"), ("ada", "admin"))]}))
    return str(path)


def _limits(app: Any) -> LimitsMiddleware:
    layer = app.middleware_stack
    while not isinstance(layer, LimitsMiddleware):
        layer = layer.app
    return layer


def client(store: Store, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(kafka_bootstrap="127.0.0.1:9", **settings), store=store))


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # callers are independent
    now[0] += 0.5
    assert buckets.take("a") == 0.0


def test_large_body_and_long_query_are_refused(store: Store) -> None:
    with client(store, max_body_bytes=2048, max_query_bytes=300) as api:
        big = api.post("/v1/alarms/rules", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json() == {"detail": "request body larger than 2048 bytes"}
        chunked = api.post("/v1/alarms/rules", content=iter([b"x" * 1500, b"y" * 1500]),
                           headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        long = api.get("/v1/series", params={"service": "s" * 400})
        assert long.status_code == 414 and "query string longer than 300 bytes" in long.text


def test_writes_beyond_the_rate_get_429_with_retry_after(store: Store, users: str) -> None:
    with client(store, write_rate_per_minute=1, write_burst=3, users_file=users) as api:
        codes = [api.delete("/v1/overrides/s/i", headers={"Authorization": "Bearer t-olga"}).status_code
                 for _ in range(4)]
        assert codes[:3] != [429] * 3 and codes[3] == 429
        refused = api.delete("/v1/overrides/s/i", headers={"Authorization": "Bearer t-olga"})
        assert 50 <= int(refused.headers["Retry-After"]) <= 60, "one token a minute: about a minute to wait"
        assert "at most 1 per minute after a burst of 3" in refused.json()["detail"]
        assert api.delete("/v1/overrides/s/i", headers={"Authorization": "Bearer t-ada"}).status_code != 429
        assert api.get("/healthz").status_code == 200  # health is never limited


@pytest.mark.parametrize("spelling", ["Bearer {}", "bearer {}", "BEARER {}", "Bearer   {}", "bEaReR {}   "])
def test_the_write_limit_keys_on_the_user_however_the_scheme_is_spelled(store: Store, users: str,
                                                                          spelling: str) -> None:
    """Varying the scheme's case and spaces let one operator make 100 writes in 2.9 s; now one bucket."""
    variants = ["Bearer {}", "bearer {}", "BEARER {}", "Bearer   {}", "bEaReR {}   "]
    with client(store, write_rate_per_minute=1, write_burst=5, users_file=users) as api:
        for variant in variants:  # 5 writes, each spelled differently: the burst is spent
            api.delete("/v1/overrides/s/i", headers={"Authorization": variant.format("t-olga")})
        refused = api.delete("/v1/overrides/s/i", headers={"Authorization": spelling.format("t-olga")})
        assert refused.status_code == 429, refused.text


def test_invented_tokens_share_their_address_bucket_and_memory_stays_bounded(store: Store) -> None:
    with client(store, write_rate_per_minute=1, write_burst=3) as api:
        codes = [api.delete("/v1/overrides/s/i", headers={"Authorization": f"Bearer {secrets.token_hex(8)}"})
                 .status_code for _ in range(5)]
        assert codes[3:] == [429, 429], "unknown tokens are anonymous: keyed on the client address"
        limits = _limits(api.app)
        assert len(limits.writes) == 1


def test_80k_random_callers_keep_the_buckets_bounded_and_they_expire() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=2, clock=lambda: now[0], max_callers=1_000)
    for n in range(80_000):
        buckets.take(f"addr:{n}")
    assert len(buckets) == 1_000
    now[0] += 1.0  # one token back for each: full again, so the same as no bucket
    buckets.take("addr:new")
    assert len(buckets) == 1


def test_reads_of_the_query_api_are_limited_but_not_the_feed_or_health(store: Store) -> None:
    with client(store, read_rate_per_minute=1, read_burst=2, feed_open=True) as api:
        codes = [api.get("/v1/series?service=s&metric=rps").status_code for _ in range(3)]
        assert codes[2] == 429 and codes[:2] != [429, 429]
        assert "too many reads: at most 1 per minute" in api.get("/v1/services").json()["detail"]
        assert all(api.get("/v1/weights").status_code != 429 for _ in range(5))
        assert all(api.get("/healthz").status_code == 200 for _ in range(5))


def test_cors_is_off_unless_origins_are_configured(store: Store) -> None:
    preflight = {"Origin": "https://grafana.example", "Access-Control-Request-Method": "GET"}
    with client(store) as api:
        assert "access-control-allow-origin" not in api.options("/healthz", headers=preflight).headers
        assert "access-control-allow-origin" not in api.get("/healthz", headers={"Origin": "https://x"}).headers
    with client(store, cors_origins=["https://grafana.example"]) as api:
        answer = api.options("/healthz", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://grafana.example"


def test_secrets_stay_out_of_messages() -> None:
    from pipeline.store import redact

    assert redact("clickhouse://loader:hunter2@db:9000/svcpulse?password=x1&timeout=5") == (
        "clickhouse://loader:***@db:9000/svcpulse?password=***&timeout=5")
    with pytest.raises(ValueError) as caught:
        open_store("mysql://loader:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


def test_the_start_up_heap_is_frozen_while_the_app_runs_and_released_after(store: Store) -> None:
    assert gc.get_freeze_count() == 0
    with client(store) as api:
        # full collections skip what start-up left (the map's p99 pauses, bench/map.py)
        assert gc.get_freeze_count() > 10_000
        assert api.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0


ARENA_PROBE = """
import ctypes, sys, threading
from svcpulse.embedded import limit_malloc_arenas
if sys.argv[1] == "capped":
    assert limit_malloc_arenas(2)
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    held = [bytearray(200_000) for _ in range(5)]  # malloc'd while all 8 threads live
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.parametrize("capped", [True, False])
def test_svcpulse_up_caps_glibc_malloc_arenas_of_its_threads(capped: bool) -> None:
    """`svcpulse up` runs ~200 threads; without the cap, 8 threads alone make more than 2 arenas."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    probe = subprocess.run([sys.executable, "-c", ARENA_PROBE, "capped" if capped else "uncapped"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    arenas = sum(1 for line in probe.stderr.splitlines() if line.startswith("Arena "))
    assert probe.returncode == 0, probe.stderr
    assert (arenas <= 2) if capped else (arenas > 2), probe.stderr


def test_an_arena_limit_set_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_malloc_arenas()
