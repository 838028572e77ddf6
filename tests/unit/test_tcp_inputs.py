"""Registry + connection windows -> engine inputs for TCP-judged services (weights/tcp_inputs.py)."""

from __future__ import annotations

import ipaddress

import pytest

from weights.model import InstanceWindow
from weights.tcp import TcpWindow
from weights.tcp_inputs import (
    Pattern,
    attach_tcp,
    canonical,
    discovered_tcp,
    parse_patterns,
    pattern_ports,
    tcp_ports,
)


def service(name: str, signal: str = "auto", discover: str = "") -> dict[str, str]:
    return {"service": name, "signal": signal, "discover": discover}


def test_patterns_parse_networks_wildcards_and_ipv6() -> None:
    assert parse_patterns(" 10.0.0.0/24:8080, *:6379,[fd00::/64]:443,10.1.2.3:80,") == [
        Pattern(ipaddress.ip_network("10.0.0.0/24"), 8080), Pattern(None, 6379),
        Pattern(ipaddress.ip_network("fd00::/64"), 443), Pattern(ipaddress.ip_network("10.1.2.3/32"), 80)]
    web = parse_patterns("10.0.0.0/24:8080")[0]
    assert web.matches(ipaddress.ip_address("10.0.0.9"), 8080)
    assert not web.matches(ipaddress.ip_address("10.0.1.9"), 8080)
    assert not web.matches(ipaddress.ip_address("10.0.0.9"), 8081)
    assert not web.matches(ipaddress.ip_address("::1"), 8080)


@pytest.mark.parametrize(("text", "words"), [("10.0.0.0/24", "expected ADDRESS"), ("*:0", "port 1..65535"),
                                             ("db.internal:5432", "names cannot be matched"),
                                             ("10.0.0.300:80", "not an IP address")])
def test_bad_patterns_say_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_patterns(text)


def test_only_ip_instances_and_patterns_of_services_not_on_rpc_cost_a_query() -> None:
    services = [service("web", "tcp", "10.0.0.0/24:8080"), service("api", "rpc", "*:9000"), service("db")]
    instances = [{"service": "web", "instance": "10.0.0.1:8081"}, {"service": "api", "instance": "10.0.0.2:9001"},
                 {"service": "db", "instance": "db-1.internal:5432"}, {"service": "db", "instance": "[::1]:5433"},
                 {"service": "unknown", "instance": "10.9.9.9:7000"}]
    assert pattern_ports(services) == {8080}
    assert tcp_ports(services, instances) == {8080, 8081, 5433, 7000}


def test_discovery_from_connections_matches_patterns_and_skips_the_known() -> None:
    services = [service("web", "auto", "10.0.0.0/24:8080"), service("api", "rpc", "*:8080")]
    rows = discovered_tcp(["10.0.0.1:8080", "10.0.0.2:8080", "10.0.1.1:8080", "10.0.0.3:9090", "[::1]:8080"],
                          services, {("web", "10.0.0.1:8080")}, 7)
    assert [(r["service"], r["instance"], r["source"], r["changed_ms"]) for r in rows] == [
        ("web", "10.0.0.2:8080", "discovered", 7)]


def test_windows_get_their_services_signal_and_connections() -> None:
    tcp = {"10.0.0.1:80": TcpWindow(attempts=5), "[::1]:80": TcpWindow(attempts=6)}
    windows = {"a": [InstanceWindow("10.0.0.1:80"), InstanceWindow("[0::1]:80"), InstanceWindow("name:80")],
               "b": [InstanceWindow("10.0.0.1:80")]}
    out = attach_tcp(windows, tcp, {"a": "tcp", "b": "rpc"})
    assert [(w.signal, w.tcp) for w in out["a"]] == [("tcp", tcp["10.0.0.1:80"]), ("tcp", tcp["[::1]:80"]),
                                                    ("tcp", None)]
    assert [(w.signal, w.tcp) for w in out["b"]] == [("rpc", None)]
    assert canonical("[0:0::1]:80") == "[::1]:80" and canonical("name:80") == "name:80"
