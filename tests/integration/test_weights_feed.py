"""The weight feed, registry, overrides, gray release and roles against a real API on ClickHouse 18.16."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import auth, rpc_event, send_rpc, serve, weigh_worker, write_users

pytestmark = pytest.mark.services

LEGACY = "legacy.db"  # an IP:port-only (heterogeneous) service
HOSTS = ["10.1.0.1:3306", "10.1.0.2:3306", "10.1.0.3:3306"]


@pytest.fixture
def api(tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> Iterator[httpx.Client]:
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}",
                        kafka_bootstrap=broker.bootstrap, users_file=str(write_users(tmp_path / "users.json")),
                        weights_interval_s=0.5)
    with weigh_worker(settings, ch_store), serve(create_app(settings)) as base, \
            httpx.Client(base_url=base, timeout=30) as client:
        yield client


def register_legacy(api: httpx.Client) -> None:
    r = api.put(f"/v1/registry/services/{LEGACY}", json={"kind": "ip", "instances": HOSTS, "why": "odd service"},
                headers=auth("olga"))
    assert r.status_code == 200, r.text
    wait_for(lambda: len(feed(api, LEGACY).get("instances", [])) == 3, 10, "the registered instances in the feed")


def feed(api: httpx.Client, service: str) -> dict[str, Any]:
    r = api.get(f"/v1/weights/{service}", headers=auth("vic"))
    return r.json() if r.status_code == 200 else {}


def test_etag_304_and_long_poll_returning_on_change(api: httpx.Client) -> None:
    register_legacy(api)
    first = api.get(f"/v1/weights/{LEGACY}", headers=auth("vic"))
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["revision"]}"'
    assert {i["weight"] for i in first.json()["instances"]} == {100}
    assert api.get(f"/v1/weights/{LEGACY}", headers={**auth("vic"), "If-None-Match": etag}).status_code == 304
    started = time.monotonic()
    unchanged = api.get(f"/v1/weights/{LEGACY}?wait_s=1.5", headers={**auth("vic"), "If-None-Match": etag})
    assert unchanged.status_code == 304 and 1.4 < time.monotonic() - started < 5

    answer: dict[str, Any] = {}

    def long_poll() -> None:
        t0 = time.monotonic()
        r = api.get(f"/v1/weights/{LEGACY}?wait_s=30", headers={**auth("vic"), "If-None-Match": etag})
        answer.update(status=r.status_code, body=r.json(), etag=r.headers["etag"], seconds=time.monotonic() - t0)

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.0)
    drained = api.put(f"/v1/overrides/{LEGACY}/{HOSTS[0]}", json={"drained": True, "why": "disk swap"},
                      headers=auth("olga"))
    assert drained.status_code == 200, drained.text
    poller.join(timeout=30)
    assert answer["status"] == 200 and answer["etag"] != etag
    assert 1.0 <= answer["seconds"] < 5, "the long-poll returns on the change, not at wait_s"
    rows = {i["instance"]: i for i in answer["body"]["instances"]}
    assert rows[HOSTS[0]]["weight"] == 0 and rows[HOSTS[0]]["state"] == "drained"

    everything = api.get("/v1/weights", headers=auth("vic"))
    assert [f["service"] for f in everything.json()["services"]] == [LEGACY]
    again = api.get("/v1/weights", headers={**auth("vic"), "If-None-Match": everything.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("query", ["wait_s=61", "wait_s=-1", "wait_s=soon"])
def test_bad_wait_is_refused_with_a_message(api: httpx.Client, query: str) -> None:
    r = api.get(f"/v1/weights/any?{query}", headers=auth("vic"))
    assert r.status_code == 422 and "wait_s" in r.text


def test_unknown_service_is_404_and_reads_need_a_viewer(api: httpx.Client) -> None:
    wait_for(lambda: api.get("/v1/weights", headers=auth("vic")).status_code == 200, 10, "first cycle")
    r = api.get("/v1/weights/nobody.here", headers=auth("vic"))
    assert r.status_code == 404 and "unknown service" in r.json()["detail"]
    r = api.get("/v1/weights")
    assert r.status_code == 401 and "bearer" in r.json()["detail"]


WRITES = [  # method, path, body, the minimum role
    ("PUT", f"/v1/registry/services/{LEGACY}", {"kind": "ip", "why": "w"}, "operator"),
    ("DELETE", f"/v1/registry/services/{LEGACY}?why=w", None, "admin"),
    ("POST", f"/v1/registry/services/{LEGACY}/instances", {"instance": HOSTS[0], "why": "w"}, "operator"),
    ("PUT", f"/v1/registry/services/{LEGACY}/instances/{HOSTS[0]}", {"enabled": False, "why": "w"}, "operator"),
    ("DELETE", f"/v1/registry/services/{LEGACY}/instances/{HOSTS[0]}?why=w", None, "operator"),
    ("PUT", f"/v1/overrides/{LEGACY}/{HOSTS[0]}", {"pinned_weight": 5, "why": "w"}, "operator"),
    ("DELETE", f"/v1/overrides/{LEGACY}/{HOSTS[0]}?why=w", None, "operator"),
    ("PUT", f"/v1/releases/{LEGACY}", {"canary_version": "5.7", "percent": 10, "why": "w"}, "operator"),
    ("DELETE", f"/v1/releases/{LEGACY}?why=w", None, "operator"),
    ("PUT", "/v1/users/otto/role", {"role": "operator", "why": "w"}, "admin"),
]
TOO_LOW = {"operator": "vic", "admin": "olga"}


@pytest.mark.parametrize(("method", "path", "body", "role"), WRITES, ids=[f"{w[0]} {w[1]}" for w in WRITES])
def test_each_write_endpoint_refuses_missing_bad_and_wrong_role_tokens(
        api: httpx.Client, method: str, path: str, body: dict[str, Any] | None, role: str) -> None:
    for headers, status, words in (({}, 401, "missing bearer token"),
                                   ({"Authorization": "Bearer nope"}, 401, "invalid token"),
                                   ({"Authorization": "Basic abc"}, 401, "missing bearer token"),
                                   (auth(TOO_LOW[role]), 403, f"role '{role}' or higher required")):
        r = api.request(method, path, json=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert words in r.json()["detail"] and "Traceback" not in r.text
    if status == 401:
        assert r.headers.get("www-authenticate") == "Bearer"


def test_role_assignment_is_bounded_by_the_users_list(api: httpx.Client) -> None:
    refused = api.put("/v1/users/olga/role", json={"role": "admin", "why": "promote"}, headers=auth("ada"))
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("user 'olga' may not hold role 'admin'; "
                                        "the users file allows ['viewer', 'operator']")
    unknown = api.put("/v1/users/olga/role", json={"role": "root", "why": "x"}, headers=auth("ada"))
    assert unknown.status_code == 422 and "viewer" in unknown.text
    assert api.put("/v1/users/nobody/role", json={"role": "viewer", "why": "x"}, headers=auth("ada")).status_code == 404
    # otto holds viewer: refused as an operator, allowed once an admin gives him the operator role.
    put = ("/v1/registry/services/x.y", {"why": "test"})
    assert api.put(put[0], json=put[1], headers=auth("otto")).status_code == 403
    promoted = api.put("/v1/users/otto/role", json={"role": "operator", "why": "on call"}, headers=auth("ada"))
    assert promoted.status_code == 200
    assert api.put(put[0], json=put[1], headers=auth("otto")).status_code == 200
    users = {u["name"]: u for u in api.get("/v1/users", headers=auth("ada")).json()}
    assert users["otto"]["role"] == "operator" and users["olga"]["may_hold"] == ["viewer", "operator"]


def test_bad_input_is_a_4xx_with_a_message(api: httpx.Client) -> None:
    cases = [
        ("POST", "/v1/registry/services/a.b/instances", {"instance": "10.0.0.1", "why": "w"}, "expected host:port"),
        ("POST", "/v1/registry/services/a.b/instances", {"instance": "10.0.0.1:80"}, "why"),
        ("PUT", "/v1/overrides/a.b/10.0.0.1:80", {"why": "w"}, "give drained: true or a pinned_weight"),
        ("PUT", "/v1/overrides/a.b/10.0.0.1:80", {"pinned_weight": -3, "why": "w"}, "pinned_weight"),
        ("PUT", "/v1/releases/a.b", {"canary_version": "v9", "percent": 10, "why": "w"}, "no instance of 'a.b'"),
        ("PUT", "/v1/releases/a.b", {"canary_version": "v9", "percent": 150, "why": "w"}, "percent"),
        ("PUT", "/v1/registry/services/a b", {"why": "w"}, "pattern"),
    ]
    for method, path, body, words in cases:
        r = api.request(method, path, json=body, headers=auth("olga"))
        assert 400 <= r.status_code < 500 and words in r.text, (path, r.text)


def test_policy_discovery_pin_release_and_automatic_abort(api: httpx.Client, broker: Tansu) -> None:
    service, stable, canary = "shop.cart", ["10.2.0.1:80", "10.2.0.2:80"], "10.2.0.9:80"
    send_rpc(broker.bootstrap, [rpc_event(service, i, version="v1") for i in stable for _ in range(30)]
               + [rpc_event(service, canary, version="v2") for _ in range(30)])
    policy = api.put(f"/v1/discovery/{service}", json={"cidrs": ["10.2.0.0/16"], "why": "shop subnet"},
                     headers=auth("ada"))
    assert policy.status_code == 200, policy.text
    wait_for(lambda: len(feed(api, service).get("instances", [])) == 3, 10, "policy-admitted instances")
    assert api.get("/v1/registry/services", headers=auth("vic")).json() == [], "telemetry writes no registry rows"

    r = api.put(f"/v1/overrides/{service}/{stable[1]}", json={"pinned_weight": 40, "why": "warm cache"},
                headers=auth("olga"))
    assert r.status_code == 200
    r = api.put(f"/v1/releases/{service}", json={"canary_version": "v2", "percent": 20, "why": "try v2"},
                headers=auth("olga"))
    assert r.status_code == 200, r.text

    def canary_share() -> float:
        rows = feed(api, service)["instances"]
        return sum(i["weight"] for i in rows if i["version"] == "v2") / sum(i["weight"] for i in rows)
    wait_for(lambda: abs(canary_share() - 0.2) < 0.01, 10, "the canary at 20% of the weight")
    rows = {i["instance"]: i["weight"] for i in feed(api, service)["instances"]}
    assert rows[stable[0]] / rows[stable[1]] == pytest.approx(100 / 40, rel=0.05), "pins survive the release"

    send_rpc(broker.bootstrap, [rpc_event(service, canary, version="v2", ok=n % 3 != 0) for n in range(90)])
    wait_for(lambda: feed(api, service)["release"]["state"] == "aborted", 10, "the automatic abort")
    assert canary_share() < 0.01  # 0%, or the probe share if the engine also ejected it
    wait_for(lambda: api.get(f"/v1/releases/{service}", headers=auth("vic")).json()["state"] == "aborted", 20,
             "the abort recorded by the lease holder")
    release = api.get(f"/v1/releases/{service}", headers=auth("vic")).json()
    assert release["percent"] == 20 and release["reason"].startswith("aborted automatically: canary v2 error rate")
    log = api.get(f"/v1/audit?service={service}", headers=auth("vic")).json()
    assert [(e["user"], e["action"]) for e in log][:4] == [
        ("svcpulse", "release.abort"), ("olga", "release.put"), ("olga", "override.pin"), ("ada", "discovery.put")]
    assert log[1]["why"] == "try v2"
    history = api.get(f"/v1/weights/{service}/history?minutes=5", headers=auth("vic")).json()
    assert {h["instance"] for h in history} == {*stable, canary}
