"""Registry + connection windows -> engine inputs for TCP-judged services (weights/tcp_inputs.py)."""

from __future__ import annotations

from weights.model import InstanceWindow
from weights.tcp import TcpWindow
from weights.tcp_inputs import attach_tcp, canonical, tcp_ports


def service(name: str, signal: str = "auto") -> dict[str, str]:
    return {"service": name, "signal": signal}


def test_only_ip_instances_of_services_not_on_rpc_cost_a_query() -> None:
    services = [service("web", "tcp"), service("api", "rpc"), service("db")]
    instances = [{"service": "web", "instance": "10.0.0.1:8081"}, {"service": "api", "instance": "10.0.0.2:9001"},
                 {"service": "db", "instance": "db-1.internal:5432"}, {"service": "db", "instance": "[::1]:5433"},
                 {"service": "unknown", "instance": "10.9.9.9:7000"}]
    assert tcp_ports(services, instances) == {8081, 5433, 7000}


def test_windows_get_their_services_signal_and_connections() -> None:
    tcp = {"10.0.0.1:80": TcpWindow(attempts=5), "[::1]:80": TcpWindow(attempts=6)}
    windows = {"a": [InstanceWindow("10.0.0.1:80"), InstanceWindow("[0::1]:80"), InstanceWindow("name:80")],
               "b": [InstanceWindow("10.0.0.1:80")]}
    out = attach_tcp(windows, tcp, {"a": "tcp", "b": "rpc"})
    assert [(w.signal, w.tcp) for w in out["a"]] == [("tcp", tcp["10.0.0.1:80"]), ("tcp", tcp["[::1]:80"]),
                                                    ("tcp", None)]
    assert [(w.signal, w.tcp) for w in out["b"]] == [("rpc", None)]
    assert canonical("[0:0::1]:80") == "[::1]:80" and canonical("name:80") == "name:80"
