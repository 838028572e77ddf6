"""The adapters' pure parts: what nginx, Caddy, HAProxy and Envoy are given for a feed."""

from __future__ import annotations

import json

import pytest
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse

from balancer.adapter import RenderError, split_address
from balancer.caddy import held_policy, merge_handler, render_policy
from balancer.client import FeedView
from balancer.eds import cluster_load_assignment, discovery_response, version_of
from balancer.envoy import EnvoyEdsFileAdapter
from balancer.haproxy import HAProxyAdapter
from balancer.nginx import render_upstream
from tests.envoy_checks import parse, violations

A, B, C, D = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"


def view(weights: dict[str, int], states: dict[str, str] | None = None) -> FeedView:
    return FeedView(weights, "r1", "normal", False, (1, False), {k: (states or {}).get(k, "healthy") for k in weights})


MIXED = view({A: 20, B: 40, C: 1, D: 0}, {C: "ejected", D: "drained"})


def test_nginx_upstream_block() -> None:
    assert render_upstream("cart", "shop.cart", MIXED, ["keepalive 32;", "least_conn"]) == (
        "# Written by `svcpulse balancer nginx` from the weight feed of shop.cart: do not edit.\n"
        "upstream cart {\n"
        "    server 10.0.0.1:80 weight=20;\n"
        "    server 10.0.0.2:80 weight=40;\n"
        "    server 10.0.0.3:80 backup;  # ejected: only if every other server is down\n"
        "    server 10.0.0.4:80 down;  # drained\n"
        "    keepalive 32;\n"
        "    least_conn;\n"
        "}\n")
    zero = render_upstream("cart", "shop.cart", view({A: 10, B: 0}))
    assert "server 10.0.0.2:80 down;  # healthy" in zero  # weight 0 by pin or canary: sends nothing


@pytest.mark.parametrize("render", [
    lambda v: render_upstream("cart", "shop.cart", v),
    lambda v: json.dumps(render_policy(v)),
    HAProxyAdapter("/x.sock", "app").render,
    EnvoyEdsFileAdapter("/x.json", "c").render,
])
def test_every_adapter_refuses_a_feed_that_routes_nothing(render: object) -> None:
    with pytest.raises(RenderError, match="routes nothing"):
        render(view({A: 0, B: 3}, {B: "ejected"}))  # type: ignore[operator]


def test_caddy_policy_aligns_upstreams_and_weights_and_divides_by_the_gcd() -> None:
    assert render_policy(MIXED) == {"upstreams": [A, B, C, D], "weights": [1, 2, 0, 0]}
    assert render_policy(view({A: 7, B: 5})) == {"upstreams": [A, B], "weights": [7, 5]}


def test_caddy_merge_keeps_the_handlers_other_settings() -> None:
    handler = {"@id": "cart", "handler": "reverse_proxy", "transport": {"protocol": "http"},
               "upstreams": [{"dial": A, "max_requests": 50}, {"dial": "10.9.9.9:80"}],
               "load_balancing": {"retries": 2, "selection_policy": {"policy": "round_robin"}}}
    merged = merge_handler(handler, render_policy(MIXED))
    assert merged["upstreams"] == [{"dial": A, "max_requests": 50}, {"dial": B}, {"dial": C}, {"dial": D}]
    assert merged["load_balancing"] == {"retries": 2, "selection_policy": {"policy": "weighted_round_robin",
                                                                           "weights": [1, 2, 0, 0]}}
    assert merged["transport"] == handler["transport"] and merged["@id"] == "cart"
    assert held_policy(merged) == render_policy(MIXED)
    assert held_policy(handler)["weights"] == []  # another policy holds no weights


def test_eds_assignment_parses_as_envoys_message_and_passes_its_validation() -> None:
    rows = [{"instance": A, "weight": 20, "state": "healthy"}, {"instance": B, "weight": 0, "state": "healthy"},
            {"instance": C, "weight": 2, "state": "ejected"}, {"instance": D, "weight": 0, "state": "drained"},
            {"instance": "[::1]:9000", "weight": 5_000_000, "state": "slow_start"},
            {"instance": "cart.internal:80", "weight": 5, "state": "healthy"}]
    assignment = cluster_load_assignment("shop.cart", rows)
    assert assignment.skipped == ("cart.internal:80",)  # EDS endpoints are addresses, not names
    cla = parse({k: v for k, v in assignment.resource.items() if k != "@type"}, ClusterLoadAssignment)
    assert violations(cla) == []
    got = [(e.endpoint.address.socket_address.address, e.load_balancing_weight.value, e.health_status)
           for e in cla.endpoints[0].lb_endpoints]
    assert got == [("10.0.0.1", 20, 1), ("10.0.0.2", 0, 3), ("10.0.0.3", 0, 2), ("10.0.0.4", 0, 3),
                   ("::1", 1_000_000, 1)]  # HEALTHY=1, UNHEALTHY=2, DRAINING=3; weights capped
    response = parse(discovery_response([assignment.resource], "v1", "v1-1"), DiscoveryResponse)
    assert violations(response) == [] and response.nonce == "v1-1"


def test_eds_version_depends_on_what_envoy_sees_only() -> None:
    rows = [{"instance": A, "weight": 20, "state": "healthy", "rps": 5.0}]
    same = [{"instance": A, "weight": 20, "state": "healthy", "rps": 9.0, "reason": "other"}]
    heavier = [{"instance": A, "weight": 21, "state": "healthy"}]
    version = version_of([cluster_load_assignment("c", rows).resource])
    assert version == version_of([cluster_load_assignment("c", same).resource])
    assert version != version_of([cluster_load_assignment("c", heavier).resource])


def test_violations_catch_what_envoy_would_refuse() -> None:
    cla = parse({"cluster_name": "", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
        "address": "10.0.0.1", "port_value": 70000}}}, "load_balancing_weight": 0}]}]}, ClusterLoadAssignment)
    found = violations(cla)
    assert any("cluster_name" in v for v in found), found
    assert any("port_value = 70000" in v for v in found), found
    assert any("load_balancing_weight = 0 breaks gte 1" in v for v in found), found


def test_split_address() -> None:
    assert split_address("10.0.0.7:8080") == ("10.0.0.7", 8080)
    assert split_address("[::1]:80") == ("::1", 80)
    for bad in ("10.0.0.7", ":80", "h:0", "h:x"):
        with pytest.raises(ValueError):
            split_address(bad)
