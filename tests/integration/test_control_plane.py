"""Control plane v2 against the real broker (Tansu) and ClickHouse 18.16, with `svcpulse weigh` and
`svcpulse api` as real processes: replicas agree, writes reach every replica within 2 s, work done
once happens once across a kill -9, a killed worker's services continue from the survivor, a
ClickHouse outage does not stop the feed, and a restarted worker keeps its window.
Timing bounds are the issue's targets plus a stated margin for a loaded 2-core machine; each test
prints what it measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import hash_token
from api.main import create_app
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu
from tests.integration.control_helpers import processes, publishers, served, steady_calls, weights_of
from tests.integration.helpers import wait_for, webhook_receiver
from tests.integration.weights_helpers import auth, insert_rpc, register, rpc_event, serve, weigh_worker, write_users
from weigh.kafka import home_partition

pytestmark = pytest.mark.services
CYCLE_S = 1.0
SESSION_S = 6.0  # the weigh group's session timeout (weigh/kafka.py)
MARGIN_S = 2.0  # for a loaded 2-core machine; the measured figures are printed


def spread(prefix: str, per_partition: int, partitions: int = 4) -> list[str]:
    """Service names whose home partitions (murmur2, as producers key them) cover every partition."""
    names: list[str] = []
    for n in range(1000):
        name = f"{prefix}{n}"
        if sum(home_partition(s, partitions) == home_partition(name, partitions) for s in names) < per_partition:
            names.append(name)
        if len(names) == per_partition * partitions:
            return names
    raise AssertionError("no spread found")


SERVICES = {name: [f"10.7.{n}.{i}:80" for i in range(1, 4)] for n, name in enumerate(spread("cp.svc", 2))}


def registered(store: Store, services: dict[str, list[str]]) -> None:
    """Telemetry alone routes nothing (weights/admission.py): the fleets are registered, as operators do."""
    for service, instances in services.items():
        register(store, service, instances)


def control_env(broker: Tansu, clickhouse: ClickHouseServer, database: str, users: Path) -> dict[str, str]:
    return {"SVCPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "SVCPULSE_USERS_FILE": str(users),
            "SVCPULSE_STORE_URL": f"clickhouse://127.0.0.1:{clickhouse.port}/{database}",
            "SVCPULSE_WEIGHTS_INTERVAL_S": str(CYCLE_S)}


def two_admins(path: Path) -> Path:
    write_users(path)
    doc = json.loads(path.read_text())
    doc["users"].append({"name": "root2", "roles": ["viewer", "operator", "admin"], "role": "admin",
                         "token_sha256": hash_token("token-of-root2")})
    path.write_text(json.dumps(doc))
    return path


def same_feeds(a: str, b: str) -> bool:
    fa, fb = served(a), served(b)
    return bool(fa) and {f["service"]: (f["revision"], weights_of(f)) for f in fa["services"]} == \
        {f["service"]: (f["revision"], weights_of(f)) for f in fb.get("services", [])}


def test_two_apis_and_two_workers_agree_and_writes_reach_both_within_2_s(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    users = two_admins(tmp_path / "users.json")
    registered(ch_store, SERVICES)
    with processes(tmp_path, control_env(broker, clickhouse, ch_store.database, users)) as procs, \
            steady_calls(broker.bootstrap, SERVICES):
        procs.weigh("weigh-1")
        procs.weigh("weigh-2")
        _, a = procs.api("api-a")
        first_b, _ = procs.api("api-b")
        wait_for(lambda: len(set(publishers(broker.bootstrap).values())) == 2, 90, "both workers publishing")
        procs.kill9(first_b)  # a replica that restarts is complete within 2 cycles of listening
        _, b = procs.api("api-b-again")
        listening = time.monotonic()
        wait_for(lambda: {f["service"] for f in served(b).get("services", [])} >= set(SERVICES),
                 2 * CYCLE_S + MARGIN_S, "every service in the restarted replica's feed", every_s=0.05)
        print(f"restarted replica complete {time.monotonic() - listening:.2f} s after it listened")
        for _ in range(5):  # the same revision and weights per service, within one cycle (+ margin)
            started = time.monotonic()
            wait_for(lambda: same_feeds(a, b), CYCLE_S + MARGIN_S, "both replicas serving the same feeds",
                     every_s=0.05)
            print(f"replicas agreed {time.monotonic() - started:.2f} s after a sample")
            time.sleep(CYCLE_S)

        service = sorted(SERVICES)[3]
        instance = SERVICES[service][1]
        r = httpx.put(f"{a}/v1/overrides/{service}/{instance}", json={"drained": True, "why": "t"},
                      headers=auth("olga"), timeout=10)
        assert r.status_code == 200, r.text
        written = time.monotonic()  # A answered: the write is done
        wait_for(lambda: weights_of(served(b, service)).get(instance) == (0, "drained"), 2.0,
                 "the drain written through A served by B", every_s=0.02)
        print(f"override through A served by B after {time.monotonic() - written:.2f} s")

        assert httpx.get(f"{b}/v1/users", headers=auth("root2"), timeout=10).status_code == 200
        r = httpx.put(f"{a}/v1/users/root2/role", json={"role": "viewer", "why": "left the team"},
                      headers=auth("ada"), timeout=10)
        assert r.status_code == 200, r.text
        written = time.monotonic()
        wait_for(lambda: httpx.get(f"{b}/v1/users", headers=auth("root2"), timeout=10).status_code == 403, 2.0,
                 "the revoked admin refused by B", every_s=0.02)
        print(f"admin revoked through A refused by B after {time.monotonic() - written:.2f} s")


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


def holds_lease(base: str) -> bool:
    try:
        return "svcpulse_api_lease_held 1.0" in httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return False


def test_one_webhook_per_transition_and_the_lease_moves_after_kill_9(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store,
        receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = receiver
    now_s = int(time.time())
    minutes = range(now_s // 60 * 60 - 300, now_s // 60 * 60 + 300, 60)  # 1 call/s, whichever minute is judged
    insert_rpc(ch_store, [rpc_event("cp.alarm", "10.6.0.1:80", ts_ms=(m + s) * 1000) for m in minutes
                          for s in range(60)])
    env = {**control_env(broker, clickhouse, ch_store.database, write_users(tmp_path / "users.json")),
           "SVCPULSE_ALARM_INTERVAL_S": "1", "SVCPULSE_ALARM_WEBHOOK_URL": url}
    rule = {"id": "cp-rps", "metric": "rps", "kind": "max", "threshold": 0.5, "service": "cp.alarm", "why": "t"}
    with processes(tmp_path, env) as procs:
        apis = dict([procs.api("api-a"), procs.api("api-b")])
        r = httpx.post(f"{next(iter(apis.values()))}/v1/alarms/rules", json=rule, headers=auth("olga"), timeout=10)
        assert r.status_code == 201, r.text
        wait_for(lambda: len(received) >= 1, 40, "the firing webhook")
        time.sleep(4)  # several passes of both replicas: still exactly one
        assert [w["state"] for w in received] == ["firing"], received
        holder = [p for p, base in apis.items() if holds_lease(base)]
        assert len(holder) == 1, "exactly one replica holds the lease"
        survivor = next(base for p, base in apis.items() if p is not holder[0])

        killed = procs.kill9(holder[0])
        r = httpx.post(f"{survivor}/v1/alarms/rules", json={**rule, "threshold": 5.0}, headers=auth("olga"),
                       timeout=10)
        assert r.status_code == 201, r.text
        wait_for(lambda: len(received) >= 2, 30, "the resolved webhook from the new lease holder")
        print(f"resolved webhook {time.monotonic() - killed:.1f} s after kill -9 of the lease holder")
        time.sleep(4)
        assert [w["state"] for w in received] == ["firing", "resolved"], received
        assert len({w["id"] for w in received}) == 2
        history = httpx.get(f"{survivor}/v1/alarms/history?rule_id=cp-rps", headers=auth("vic"), timeout=10)
        assert [e["state"] for e in history.json()["events"]] == ["resolved", "firing"]


def test_a_killed_worker_s_services_continue_from_the_survivor_never_empty(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    env = control_env(broker, clickhouse, ch_store.database, write_users(tmp_path / "users.json"))
    registered(ch_store, SERVICES)
    with processes(tmp_path, env) as procs, steady_calls(broker.bootstrap, SERVICES, per_instance_per_s=40):
        workers = {procs.weigh("weigh-1"): "", procs.weigh("weigh-2"): ""}
        _, api = procs.api("api")
        wait_for(lambda: len(set(publishers(broker.bootstrap).values())) == 2, 60, "both workers publishing")
        owners = publishers(broker.bootstrap)
        victim_name = sorted(set(owners.values()))[0]
        victim = next(p for p in workers if victim_name.endswith(f":{p.pid}"))
        moved = sorted(s for s, w in owners.items() if w == victim_name)
        # published is not yet served: the API replica reads svcpulse.weights on its own (ci-local saw a 404 here)
        wait_for(lambda: all("generated_at_ms" in served(api, s) for s in moved), 30, "the API serving them")
        before = {s: served(api, s)["generated_at_ms"] for s in moved}

        killed = procs.kill9(victim)
        killed_ms = int(time.time() * 1000)
        print(f"killed {victim_name} at {time.strftime('%H:%M:%S')}.{killed_ms % 1000:03d}")
        continued: dict[str, float] = {}
        stale_seen = set()
        deadline = time.monotonic() + SESSION_S + CYCLE_S + 15
        while len(continued) < len(moved) and time.monotonic() < deadline:
            for service in moved:
                feed = served(api, service)
                assert feed.get("instances"), f"{service} was served empty after the kill"
                stale_seen |= {service} if feed.get("stale") else set()
                if service not in continued and feed["generated_at_ms"] > killed_ms and not feed.get("stale"):
                    continued[service] = time.monotonic() - killed
            time.sleep(0.1)
        assert set(continued) == set(moved), f"not continued: {set(moved) - set(continued)}"
        worst = max(continued.values())
        print(f"{len(moved)} services continued from the survivor after {worst:.1f} s (stale in between: "
              f"{sorted(stale_seen)}); before the kill generated at {before}")
        # The survivor kept the victim's partitions warm (weigh/standby.py) and publishes them once the victim
        # is silent for a session timeout; without the standby it waits for the group's rebalance (+ Tansu's
        # rejoin hold of half a session) and a replay: 12 s here, over this bound.
        assert worst <= SESSION_S + CYCLE_S + MARGIN_S, "session timeout + one cycle (+ margin)"
        assert set(publishers(broker.bootstrap)[s] for s in moved) != {victim_name}
        time.sleep(SESSION_S * 1.5 + 4)  # the group has moved the partitions: the standby handed them over
        rates = [i["rps"] for s in moved for i in served(api, s)["instances"]]
        print(f"after the group moved them: rps per instance {rates} (40 sent)")
        assert all(20 <= rps <= 60 for rps in rates), "each call counted once across standby and take-over"


def test_clickhouse_stopped_60_s_the_feed_keeps_updating_and_reacts_to_a_fault(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    service, instances = "cp.outage", [f"10.5.1.{i}:80" for i in range(1, 6)]
    faulty = {"now": False}
    registered(ch_store, {service: instances})
    settings = Settings(kafka_bootstrap=broker.bootstrap, weights_interval_s=CYCLE_S, feed_open=True,
                        users_file=str(write_users(tmp_path / "users.json")))

    def errors(_: str, instance: str) -> float:
        return 1.0 if faulty["now"] and instance == instances[0] else 0.0
    with steady_calls(broker.bootstrap, {service: instances}, error_rate=errors), \
            weigh_worker(settings, ch_store), serve(create_app(settings, store=ch_store)) as api:
        wait_for(lambda: len(served(api, service).get("instances", [])) == 5, 30, "the feed")
        clickhouse.stop()
        try:
            stopped = time.monotonic()
            time.sleep(10)
            feed = served(api, service)
            assert "stale" not in feed and time.time() * 1000 - feed["generated_at_ms"] < 3 * CYCLE_S * 1000
            faulty["now"] = True
            wait_for(lambda: weights_of(served(api, service))[instances[0]][0] < 50, 10,
                     "the faulty instance cut while ClickHouse is down")
            print(f"fault cut {time.monotonic() - stopped - 10:.1f} s after injection, ClickHouse down")
            time.sleep(max(0.0, 60 - (time.monotonic() - stopped)))
            feed = served(api, service)
            assert "stale" not in feed and weights_of(feed)[instances[0]][0] < 50
        finally:
            clickhouse.start()
        wait_for(lambda: ch_store.execute("SELECT count() FROM weight_history WHERE service = %(s)s",
                                          {"s": service})[0][0] > 0, 60, "weight_history written after the outage")


def test_a_restarted_worker_keeps_the_window_and_the_degraded_instance_stays_cut(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    service, instances = "cp.restart", [f"10.4.1.{i}:80" for i in range(1, 6)]
    env = control_env(broker, clickhouse, ch_store.database, write_users(tmp_path / "users.json"))
    registered(ch_store, {service: instances})

    def errors(_: str, instance: str) -> float:
        return 0.1 if instance == instances[0] else 0.0  # success 90%: cut, not ejected
    with processes(tmp_path, env) as procs, steady_calls(broker.bootstrap, {service: instances}, error_rate=errors):
        worker = procs.weigh("weigh-1")
        _, api = procs.api("api")
        wait_for(lambda: weights_of(served(api, service)).get(instances[0], (100, ""))[0] < 90, 30,
                 "the degraded instance cut")
        cut = weights_of(served(api, service))[instances[0]]
        procs.kill9(worker)
        procs.weigh("weigh-1-again")
        seen = []
        restarted_ms, fresh_after = int(time.time() * 1000), None
        while fresh_after is None or len(seen) < 5 * 10 + fresh_after:  # until 10 s after its first new feed
            feed = served(api, service)
            weight, state = weights_of(feed)[instances[0]]
            seen.append((round(time.time() - restarted_ms / 1000, 1), weight, state))
            if fresh_after is None and feed["generated_at_ms"] > restarted_ms:  # the new worker's first feed
                fresh_after = len(seen)
            assert len(seen) < 5 * 90, f"no new feed 90 s after the restart: {seen[-3:]}"
            time.sleep(0.2)
        print(f"before the restart {cut}; after (s, weight, state): {seen[::10]}")
        assert all(state != "healthy" and weight < 90 for _, weight, state in seen), seen
