"""Failure drills (issue 6): hostile input, an API restart under polling balancers, fuzzing the OpenAPI.

The other drills live with the component they exercise: the loader killed with -9 in a loop and
ClickHouse down mid-stream in test_loader.py, the broker unreachable for 60 s in test_sink.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from kafka import KafkaConsumer

from api.main import create_app
from balancer.client import Balancer, WeightFeedClient
from core.settings import Settings
from pipeline import events
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu, free_port, port_open
from tests.factories import rpc_event
from tests.integration.helpers import LoaderThread, count, produce, wait_for
from tests.integration.weights_helpers import auth, register, send_rpc, serve, weigh_worker, write_users
from tests.integration.weights_helpers import rpc_event as feed_event

pytestmark = pytest.mark.services


def hostile_corpus() -> list[bytes]:
    good = rpc_event(1)
    return [
        json.dumps({**good, "interface": "x" * 60_000}).encode(),  # a huge string (under the size cap)
        b"{" + b'"k":' * 1 + b'"' + b"y" * 70_000 + b'"}',  # over the 64 KiB message cap
        json.dumps({**good, "latency_ms": [1, 2]}).encode(),  # wrong types
        json.dumps({**good, "ts_ms": "2026-11-26T00:00:00Z"}).encode(),
        json.dumps({**good, "status": {"nested": {"deeper": {}}}}).encode(),
        b"[" * 20_000 + b"]" * 20_000,  # deep nesting
        b'{"callee": "\xc3\x28"}',  # invalid UTF-8
        b"\xff\xfe\xfd",
        b"",  # empty
        b"null",
        json.dumps({**good, "v": 99}).encode(),  # a future contract version
        json.dumps({**good, "latency_ms": 1e400}).encode().replace(b"Infinity", b"1e400"),
    ]


def test_hostile_events_all_end_in_the_dlq_and_the_loader_keeps_going(broker: Tansu, ch_store: Store) -> None:
    corpus = hostile_corpus()
    produce(broker.bootstrap, [("rpc", raw) for raw in corpus] + [("rpc", rpc_event(i)) for i in range(100)])
    with LoaderThread(broker.bootstrap, ch_store) as loader:
        wait_for(lambda: count(ch_store, "rpc_calls") == 100, 60, "the good rows after the hostile ones")
        produce(broker.bootstrap, [("rpc", rpc_event(i)) for i in range(100, 200)])
        wait_for(lambda: count(ch_store, "rpc_calls") == 200, 60, "rows produced after the corpus")
        assert not loader.stop_event.is_set()
    consumer = KafkaConsumer("svcpulse.dlq", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, group_id=None)
    dead = [events.decode("dlq", record.value) for record in consumer]
    consumer.close()
    assert sorted(events.dead_letter_payload(d) for d in dead) == sorted(corpus)
    reasons = Counter(d["reason"].split(":")[0] for d in dead)
    assert all(d["reason"] for d in dead), reasons


def _api_process(broker: Tansu, clickhouse: ClickHouseServer, database: str, users: Path,
                 port: int) -> subprocess.Popen:
    env_args = ["--store", f"clickhouse://127.0.0.1:{clickhouse.port}/{database}", "--port", str(port),
                "--bootstrap", broker.bootstrap]
    return subprocess.Popen([sys.executable, "-m", "svcpulse", "api", *env_args],
                            env={"SVCPULSE_USERS_FILE": str(users), "SVCPULSE_FEED_OPEN": "true",
                                 "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _calls_keep_coming(bootstrap: str, service: str, instances: list[str], stop: threading.Event) -> None:
    """The feed judges the last seconds: keep them populated."""
    while not stop.wait(0.5):
        now = int(time.time() * 1000)
        send_rpc(bootstrap, [feed_event(service, a, ts_ms=now - i) for a in instances for i in range(20)])


def test_balancers_keep_routing_while_the_api_restarts(broker: Tansu, clickhouse: ClickHouseServer,
                                                       ch_store: Store, tmp_path: Path) -> None:
    instances = ["10.9.0.1:80", "10.9.0.2:80"]
    register(ch_store, "drill.svc", instances)  # telemetry alone routes nothing
    stop = threading.Event()
    feeder = threading.Thread(target=_calls_keep_coming, args=(broker.bootstrap, "drill.svc", instances, stop),
                              daemon=True)
    feeder.start()
    users, port = write_users(tmp_path / "users.json"), free_port()
    api = _api_process(broker, clickhouse, ch_store.database, users, port)
    try:
        with weigh_worker(Settings(kafka_bootstrap=broker.bootstrap, weights_interval_s=0.5), ch_store):
            wait_for(lambda: port_open(port), 90, "the API")  # a loaded machine starts a process slowly
            with WeightFeedClient(f"http://127.0.0.1:{port}", "drill.svc", wait_s=2, expiry_s=120) as feed:
                assert feed.wait_ready(30)
                balancer = Balancer(feed, picker="swrr")
                api.kill()
                api.wait()
                wait_for(lambda: feed.last_error, 30, "the client to notice the API is gone")
                picked = Counter(balancer.pick() for _ in range(200))  # the API is gone: last known weights
                assert set(picked) == set(instances)
                api = _api_process(broker, clickhouse, ch_store.database, users, port)
                wait_for(lambda: port_open(port) and not feed.last_error, 30, "the client to reconnect")
                assert set(Counter(balancer.pick() for _ in range(200))) == set(instances)
    finally:
        stop.set()
        feeder.join()
        api.kill()
        api.wait()


def test_feed_keeps_the_last_weights_marked_stale_while_no_worker_publishes(
        broker: Tansu, ch_store: Store, tmp_path: Path) -> None:
    """The weigh worker stops (the ClickHouse outage drill is in test_control_plane.py: the feed keeps
    updating from the stream then). After 3 cycles the API serves the last weights marked stale."""
    settings = Settings(users_file=str(write_users(tmp_path / "users.json")), feed_open=True,
                        kafka_bootstrap=broker.bootstrap, weights_interval_s=0.5)
    register(ch_store, "stale.svc", ["10.8.0.1:80", "10.8.0.2:80"])
    stop = threading.Event()
    feeder = threading.Thread(target=_calls_keep_coming, daemon=True,
                              args=(broker.bootstrap, "stale.svc", ["10.8.0.1:80", "10.8.0.2:80"], stop))
    feeder.start()
    try:
        with serve(create_app(settings, store=ch_store)) as base:
            with weigh_worker(settings, ch_store):
                fresh: dict[str, Any] = {}

                def current() -> bool:
                    answer = requests.get(f"{base}/v1/weights/stale.svc", timeout=5)
                    fresh.update(answer.json() if answer.status_code == 200 else {})
                    return answer.status_code == 200 and "stale" not in fresh
                wait_for(current, 20, "a current feed")
                assert len(fresh["instances"]) == 2
            wait_for(lambda: requests.get(f"{base}/v1/weights/stale.svc", timeout=5).json().get("stale"), 20,
                     "the feed to be marked stale")
            stale = requests.get(f"{base}/v1/weights/stale.svc", timeout=5).json()
            assert [i["instance"] for i in stale["instances"]] == [i["instance"] for i in fresh["instances"]]
            assert "no feed from a weigh worker" in stale["stale_reason"]
            with weigh_worker(settings, ch_store):
                wait_for(lambda: "stale" not in requests.get(f"{base}/v1/weights/stale.svc", timeout=5).json(), 30,
                         "fresh weights once a worker publishes again")
    finally:
        stop.set()
        feeder.join()


def test_fuzzing_the_openapi_finds_no_server_error(broker: Tansu, ch_store: Store, tmp_path: Path) -> None:
    """schemathesis generates requests for every operation of the OpenAPI; none may answer 5xx.

    Driven from inside one test (schemathesis' pytest plugin does not run on pytest 9), with an admin
    token so the handlers run rather than the auth check."""
    users = write_users(tmp_path / "users.json")
    app = create_app(Settings(users_file=str(users), kafka_bootstrap=broker.bootstrap), store=ch_store)
    failures: list[str] = []
    sent = Counter[str]()
    with serve(app) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]

        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def no_server_error(case: Any) -> None:
                # Sent with requests directly: schemathesis' own call() trips on urllib3 2.8's pool type.
                response = requests.request(**case.as_transport_kwargs(base_url=base, headers=auth("ada")),
                                            timeout=30)
                sent[f"{case.method} {case.path}"] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                    f"{response.text[:200]}")

            no_server_error()
    assert len(operations) >= 20 and len(sent) == len(operations), set(sent)
    print(f"schemathesis: {sum(sent.values())} requests over {len(operations)} operations")
    assert not failures, "\n".join(failures[:10])
