"""Issue 9 §2 against the public behaviour: events produced to the real broker, loaded by the real loader
into ClickHouse 18.16, a weigh worker computing the feed from the stream (admission and caps run there),
the API serving it, and the project's balancer client picking from it.

Telemetry describes endpoints, it does not create them: the hijack event gets no traffic, an instance
a discovery policy admits gets traffic and leaves after forget_s, and names that made it into storage
before the fix can be drained, pinned, unpinned and deleted through the API.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from api.main import create_app
from api.queries import registry as reg
from balancer.client import Balancer, WeightFeedClient
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.helpers import LoaderThread, produce, wait_for
from tests.integration.weights_helpers import auth, insert_rpc, rpc_event, serve, token, weigh_worker, write_users
from weigh.worker import Worker

pytestmark = pytest.mark.services

SERVICE = "shop.cart"
HIJACK = "203.0.113.66:443"
REGISTERED = ["10.20.0.1:8080", "10.20.0.2:8080", "10.20.0.3:8080"]


@dataclass(frozen=True)
class Api:
    base: str
    http: httpx.Client
    store: Store
    bootstrap: str
    worker: Worker


@contextmanager
def running_api(tmp_path: Path, broker: Tansu, store: Store, loader: bool = True, **settings: Any) -> Iterator[Api]:
    config = Settings(users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=0.5,
                      kafka_bootstrap=broker.bootstrap, **settings)
    with contextlib.ExitStack() as running:
        if loader:
            running.enter_context(LoaderThread(broker.bootstrap, store, group_id=f"trust-{tmp_path.name}"))
        worker = running.enter_context(weigh_worker(config, store))
        base = running.enter_context(serve(create_app(config, store=store)))
        yield Api(base, running.enter_context(httpx.Client(base_url=base, timeout=30)), store, broker.bootstrap,
                  worker)


@contextmanager
def live_calls(bootstrap: str, instances: dict[str, str]) -> Iterator[threading.Event]:
    """Keep producing calls (instance -> side that reports it) every 0.3 s until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.3):
            produce(bootstrap, [("rpc", {**rpc_event(SERVICE, i), "side": side})
                                for i, side in instances.items() for _ in range(5)])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)


def feed_instances(api: Api) -> set[str]:
    r = api.http.get(f"/v1/weights/{SERVICE}", headers=auth("vic"))
    return {i["instance"] for i in r.json()["instances"]} if r.status_code == 200 else set()


def picks(api: Api, n: int = 5000) -> Counter[str]:
    """What the project's own client balancer sends n calls to, following the live feed."""
    with WeightFeedClient(api.base, SERVICE, token("vic"), wait_s=1) as feed:
        assert feed.wait_ready(15), feed.last_error
        balancer = Balancer(feed, picker="swrr")
        counted: Counter[str] = Counter()
        for _ in range(n):
            with balancer.call() as instance:
                counted[instance] += 1
    return counted


def loaded(api: Api, instance: str) -> int:
    return int(api.store.execute("SELECT count() FROM rpc_calls WHERE instance = %(i)s", {"i": instance})[0][0])


def observed(api: Api) -> dict[str, dict[str, Any]]:
    rows = api.http.get(f"/v1/services/{SERVICE}/instances", headers=auth("vic")).json()["instances"]
    return {row["instance"]: row for row in rows}


def test_the_hijack_event_gets_zero_picks(tmp_path: Path, broker: Tansu, ch_store: Store) -> None:
    with running_api(tmp_path, broker, ch_store) as api:
        r = api.http.put(f"/v1/registry/services/{SERVICE}", headers=auth("olga"),
                         json={"instances": REGISTERED, "why": "the cart fleet"})
        assert r.status_code == 200, r.text
        wait_for(lambda: feed_instances(api) == set(REGISTERED), 30, "the registered fleet in the feed")
        with live_calls(api.bootstrap, dict.fromkeys(REGISTERED, "server")):
            # The attacker reports the address as a server and as a client, over and over.
            produce(api.bootstrap, [("rpc", {**rpc_event(SERVICE, HIJACK), "side": side})
                                    for side in ("server", "client") for _ in range(200)])
            wait_for(lambda: loaded(api, HIJACK) == 400, 60, "the hijack events in ClickHouse")
            cycles = api.http.get(f"/v1/weights/{SERVICE}", headers=auth("vic")).json()["generated_at_ms"]
            wait_for(lambda: api.http.get(f"/v1/weights/{SERVICE}", headers=auth("vic")).json()["generated_at_ms"]
                     > cycles + 1000, 20, "two more weight cycles")
            assert feed_instances(api) == set(REGISTERED)
            counted = picks(api)
        assert counted[HIJACK] == 0 and set(counted) == set(REGISTERED), counted
        listed = observed(api)[HIJACK]
        assert (listed["routable"], listed["registered"]) == (False, False)
        assert listed["admission"] == ("observed, not routable: not registered and its service has no "
                                       "discovery policy")
        assert api.http.get("/v1/registry/services", headers=auth("vic")).json()[0]["instances"] == [
            row for row in reg.instances(ch_store, SERVICE)], "telemetry wrote nothing into the registry"


def test_a_policy_admitted_instance_gets_traffic_then_expires(tmp_path: Path, broker: Tansu,
                                                               ch_store: Store) -> None:
    admitted, outside, wrong_port, clients_only = ("10.20.0.5:8080", "10.21.0.5:8080", "10.20.0.6:9090",
                                                   "10.20.0.7:8080")
    with running_api(tmp_path, broker, ch_store, forget_instance_s=10) as api:
        assert api.http.post(f"/v1/registry/services/{SERVICE}/instances", headers=auth("olga"),
                             json={"instance": REGISTERED[0], "why": "always there"}).status_code == 201
        refused = api.http.put(f"/v1/discovery/{SERVICE}", headers=auth("olga"),
                               json={"cidrs": ["10.20.0.0/16"], "why": "w"})
        assert refused.status_code == 403, "turning discovery on is an admin's decision"
        policy = api.http.put(f"/v1/discovery/{SERVICE}", headers=auth("ada"),
                              json={"cidrs": ["10.20.0.0/16"], "ports": [8080], "why": "cart pods' subnet"})
        assert policy.status_code == 200, policy.text
        reports = {REGISTERED[0]: "server", admitted: "server", outside: "server", wrong_port: "server",
                   clients_only: "client"}
        with live_calls(api.bootstrap, reports):
            wait_for(lambda: admitted in feed_instances(api), 60, "the admitted instance in the feed")
            assert feed_instances(api) == {REGISTERED[0], admitted}
            counted = picks(api, 2000)
            assert counted[admitted] > 0 and set(counted) == {REGISTERED[0], admitted}, counted
            # The instance list reads ClickHouse: the loader may still be behind the stream the feed follows.
            wait_for(lambda: {outside, wrong_port, clients_only} <= observed(api).keys(), 30, "the instances loaded")
            why = {i: row["admission"] for i, row in observed(api).items() if not row["routable"]}
            assert "outside the discovery policy's ranges (10.20.0.0/16)" in why[outside]
            assert "port 9090 is not among the policy's ports [8080]" in why[wrong_port]
            assert "only clients reported it" in why[clients_only]
        stopped = time.monotonic()
        wait_for(lambda: admitted not in feed_instances(api), 40, "the admitted instance to expire")
        gone_after = time.monotonic() - stopped
        assert gone_after >= 5, f"left after {gone_after:.1f} s: expiry follows forget_s (10 s), not the window"
        assert picks(api, 500)[admitted] == 0
        assert feed_instances(api) == {REGISTERED[0]}, "a registered instance does not expire"


HOSTILE = {
    "markup": "<img src=x onerror=alert(1)>",
    "long": "10.66.0.1:" + "9" * 240,  # 250 characters
    "control bytes": "10.66.0.2:80\x00\x1b[31m\r\n\t",
    "slashes": "a/../../b%2F:80",
}


def _store_as_before_the_fix(store: Store, service: str, names: dict[str, str], source: str) -> None:
    """Rows the way an older version's discovery (or an automation writing to the table) left them."""
    stamp = {"deleted": 0, "changed_ms": reg.stamp_ms(), "changed_by": "svcpulse", "source": source}
    reg.write_services(store, [{"service": service, "kind": "rpc", "description": "", **stamp}])
    reg.write_instances(store, [{"service": service, "instance": name, "static_weight": 100, "version": "",
                                 "enabled": 1, **stamp} for name in names.values()])
    insert_rpc(store, [rpc_event(service, name) for name in names.values() for _ in range(30)])


def test_hostile_names_in_storage_can_be_drained_pinned_unpinned_and_deleted(
        tmp_path: Path, broker: Tansu, ch_store: Store) -> None:
    _store_as_before_the_fix(ch_store, SERVICE, HOSTILE, source="api")  # routable: in the feed
    evil_service = "GET /cart/<script>\x07"
    _store_as_before_the_fix(ch_store, evil_service, {"x": "10.0.0.9:80"}, source="discovered")
    with running_api(tmp_path, broker, ch_store, loader=False) as api:  # the names are in storage already
        wait_for(lambda: feed_instances(api) == set(HOSTILE.values()), 20, "the stored names in the feed")
        for what, name in HOSTILE.items():
            by_name = {"params": {"service": SERVICE, "instance": name}, "headers": auth("olga")}
            drained = api.http.put("/v1/overrides", json={"drained": True, "why": f"drain {what}"}, **by_name)
            assert drained.status_code == 200, (what, drained.text)
            wait_for(lambda n=name: _state(api, n) == ("drained", 0), 10, f"{what} drained")
            pinned = api.http.put("/v1/overrides", json={"pinned_weight": 7, "why": "pin"}, **by_name)
            assert pinned.status_code == 200, (what, pinned.text)
            wait_for(lambda n=name: _state(api, n)[1] == 7, 10, f"{what} pinned")
            unpinned = api.http.request("DELETE", "/v1/overrides", params={**by_name["params"], "why": "unpin"},
                                        headers=auth("olga"))
            assert unpinned.status_code == 200 and unpinned.json()["instance"] == name, (what, unpinned.text)
            deleted = api.http.request("DELETE", "/v1/registry/instances",
                                       params={**by_name["params"], "why": f"delete {what}"}, headers=auth("olga"))
            assert deleted.status_code == 200 and deleted.json()["instance"] == name, (what, deleted.text)
            wait_for(lambda n=name: n not in feed_instances(api), 10, f"{what} out of the feed")
        # The path form takes the names a path can carry (it answered 422 before the fix).
        path_name = HOSTILE["markup"]
        r = api.http.put(f"/v1/overrides/{SERVICE}/{path_name}", json={"drained": True, "why": "w"},
                         headers=auth("olga"))
        assert r.status_code == 200 and r.json()["instance"] == path_name, r.text
        # A service name with a slash and a control byte goes by its exact name.
        r = api.http.request("DELETE", "/v1/registry/services", params={"service": evil_service, "why": "junk"},
                             headers=auth("ada"))
        assert r.status_code == 200 and r.json()["instances"] == 1, r.text
        assert evil_service not in {s["service"] for s in reg.services(ch_store)}
        # A bad name nothing stores is still refused with what was expected.
        r = api.http.put("/v1/overrides", params={"service": SERVICE, "instance": "<b>never seen</b>"},
                         json={"drained": True, "why": "w"}, headers=auth("olga"))
        assert r.status_code == 422 and "expected host:port" in r.json()["detail"]


def _state(api: Api, instance: str) -> tuple[str, int]:
    rows = api.http.get(f"/v1/weights/{SERVICE}", headers=auth("vic")).json()["instances"]
    row = next(i for i in rows if i["instance"] == instance)
    return row["state"], row["weight"]


def test_caps_bound_what_a_flood_creates_while_every_event_is_stored(tmp_path: Path, broker: Tansu,
                                                                     ch_store: Store) -> None:
    from api.queries.discovery import write_policy

    write_policy(ch_store, "shop.pods", ["10.0.0.0/8"], why="any pod")
    flood = [("rpc", rpc_event(f"one-off-{n}", "10.9.9.9:80")) for n in range(300)]
    flood += [("rpc", {**rpc_event("shop.pods", f"10.1.{n // 250}.{n % 250 + 1}:8080"), "interface": f"GET /{n}"})
              for n in range(300)]
    caps = {"cap_services_per_hour": 5, "cap_instances_per_service": 3, "cap_interfaces_per_service": 4}
    with running_api(tmp_path, broker, ch_store, **caps) as api:

        def gauge(name: str, labels: str) -> float:
            """The weigh worker's metrics (it runs in this process: the default registry)."""
            found = re.search(rf"^{name}{{{labels}}} (\S+)$", generate_latest().decode(), re.MULTILINE)
            return float(found[1]) if found else -1.0

        wait_for(lambda: api.worker.gate.armed, 30, "the worker's first cycle with the control tables")
        produce(broker.bootstrap, flood)
        wait_for(lambda: ch_store.execute("SELECT count() FROM rpc_calls")[0][0] == 600, 60, "every event stored")
        assert "svcpulse_cap_refused" not in api.http.get("/metrics").text, "the API exports its own series only"
        wait_for(lambda: gauge("svcpulse_cap_refused", 'cap="services_per_hour"') == 295, 30,
                 "the 295 one-off services over the cap of 5 counted")
        assert gauge("svcpulse_entities_tracked", 'kind="services"') == 6, "5 one-offs and shop.pods"
        assert gauge("svcpulse_cap_refused", 'cap="instances_per_service"') > 0
        # the feed the worker published that tick reaches the API through svcpulse.weights a moment later
        wait_for(lambda: len(feed_instances_of(api, "shop.pods")) == 3, 15,
                 "a broad policy admitting only up to the cap")
        interfaces = api.http.get("/v1/services/shop.pods/interfaces", headers=auth("vic")).json()
        assert len(interfaces["interfaces"]) == 4 and interfaces["omitted"] == 296
        listed = api.http.get("/v1/weights", headers=auth("vic")).json()["services"]
        assert [f["service"] for f in listed] == ["shop.pods"], "no one-off name has a feed"
        services = api.http.get("/v1/services", headers=auth("vic")).json()
        assert len(services["services"]) == 6 and services["omitted"] == 295, "the listing is bounded too"


def feed_instances_of(api: Api, service: str) -> set[str]:
    r = api.http.get(f"/v1/weights/{service}", headers=auth("vic"))
    return {i["instance"] for i in r.json()["instances"]} if r.status_code == 200 else set()
