"""Who may create a routable endpoint (weights/admission.py): the registry, or a discovery policy."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from weights.admission import DiscoveryPolicy, admit, authority, judge, parse_endpoint, parse_policy

NOW = 1_000_000
FORGET = 300_000


def seen(instance: str, side: str = "server", service: str = "shop.cart", last_ms: int = NOW) -> dict[str, Any]:
    return {"service": service, "instance": instance, "side": side, "last_ms": last_ms}


def registered(instance: str, source: str = "api", service: str = "shop.cart", **extra: Any) -> dict[str, Any]:
    return {"service": service, "instance": instance, "static_weight": 100, "version": "", "enabled": 1,
            "source": source, "deleted": 0, **extra}


POLICY = parse_policy({"service": "shop.cart", "cidrs": ["10.20.0.0/16", "fd00::/8"], "ports": [8080],
                       "server_side_only": 1})


def test_the_hijack_event_is_observed_not_routable() -> None:
    made = authority([registered("10.20.0.1:8080")], [], {})
    result = admit([seen("10.20.0.1:8080"), seen("203.0.113.66:443")], made, NOW, FORGET)
    assert [r["instance"] for r in result.routable] == ["10.20.0.1:8080"]
    assert result.not_routable == {("shop.cart", "203.0.113.66:443"): "observed, not routable: not registered "
                                   "and its service has no discovery policy"}
    assert result.observations([seen("10.20.0.1:8080"), seen("203.0.113.66:443")]) == [seen("10.20.0.1:8080")]


def test_an_unregistered_callee_gets_no_feed_and_legacy_discovered_rows_do_not_count() -> None:
    made = authority([registered("10.0.0.9:80", source="discovered", service="evil")],
                     [{"service": "evil", "source": "discovered", "deleted": 0}], {})
    result = admit([seen("10.0.0.9:80", service="evil")], made, NOW, FORGET)
    assert result.routable == [] and result.feed_services == frozenset()
    assert set(result.not_routable) == {("evil", "10.0.0.9:80")}


@pytest.mark.parametrize(("instance", "side", "why"), [
    ("10.20.3.4:8080", "server", None),
    ("[fd00::7]:8080", "server", None),
    ("10.21.3.4:8080", "server", "outside the discovery policy's ranges"),
    ("10.20.3.4:9090", "server", "port 9090 is not among the policy's ports [8080]"),
    ("10.20.3.4:8080", "client", "only clients reported it"),
    ("db-1.internal:8080", "server", "not an IP:port"),
    ("<img src=x onerror=alert(1)>", "server", "not an IP:port"),
])
def test_a_policy_admits_server_reports_inside_its_ranges_and_ports(instance: str, side: str, why: str | None) -> None:
    verdict = judge(instance, side == "server", None, POLICY)
    assert verdict.routable is (why is None)
    if why:
        assert why in verdict.reason and verdict.reason.startswith("observed, not routable")
    else:
        assert verdict.source == "policy"


def test_trusting_clients_is_an_explicit_choice() -> None:
    lax = DiscoveryPolicy("shop.cart", (ipaddress.ip_network("10.20.0.0/16"),), server_side_only=False)
    assert judge("10.20.3.4:1234", False, None, lax).routable


def test_admitted_instances_expire_after_forget_ms() -> None:
    made = authority([], [], {"shop.cart": POLICY})
    fresh = admit([seen("10.20.0.5:8080", last_ms=NOW - FORGET)], made, NOW, FORGET)
    assert [r["instance"] for r in fresh.routable] == ["10.20.0.5:8080"]
    assert fresh.routable[0]["source"] == "policy" and fresh.feed_services == {"shop.cart"}
    stale = admit([seen("10.20.0.5:8080", last_ms=NOW - FORGET - 1)], made, NOW, FORGET)
    assert stale.routable == [] and stale.feed_services == set(), "no feed: balancers use their fallback again"


def test_a_client_report_does_not_satisfy_a_server_side_policy_even_with_a_stale_server_row() -> None:
    made = authority([], [], {"shop.cart": POLICY})
    rows = [seen("10.20.0.5:8080", "server", last_ms=NOW - FORGET - 5), seen("10.20.0.5:8080", "client")]
    assert admit(rows, made, NOW, FORGET).routable == []


@pytest.mark.parametrize(("text", "parsed"), [("10.0.0.7:8080", ("10.0.0.7", 8080)), ("[::1]:80", ("::1", 80)),
                                              ("::1:80", None), ("host:80", None), ("10.0.0.7:0", None),
                                              ("10.0.0.7:٣", None), ("10.0.0.7", None)])
def test_endpoints_parse_only_as_ip_and_port(text: str, parsed: tuple[str, int] | None) -> None:
    got = parse_endpoint(text)
    assert (None if got is None else (str(got[0]), got[1])) == parsed
