"""Pure transforms for TCP-judged instances: registry + connection windows -> engine inputs.

An instance gets callers' connections when its registered name is an IP literal and port (the
collector sees addresses, not names: a DNS name never matches). A service may also name endpoint
patterns to discover instances from (`discover`, e.g. "10.0.0.0/24:8080, *:6379"): every remote
endpoint callers connected to that matches becomes an instance of it, like rpc discovery does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from weights.model import STATIC_WEIGHT, InstanceWindow
from weights.tcp import SIGNALS, Signal, TcpWindow

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Pattern:
    """One discover pattern: any address (network None) or a network, and one port."""

    network: Network | None
    port: int

    def matches(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        if port != self.port:
            return False
        return self.network is None or (address.version == self.network.version and address in self.network)


def parse_patterns(text: str) -> list[Pattern]:
    """'10.0.0.0/24:8080, *:6379, [fd00::/64]:443' -> patterns; a ValueError says what is wrong."""
    patterns = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"discover pattern {item!r}: expected ADDRESS[/BITS]:PORT or *:PORT with a port "
                             "1..65535, e.g. 10.0.0.0/24:8080")
        host = host.strip("[]")
        try:
            network = None if host == "*" else ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(f"discover pattern {item!r}: {host!r} is not an IP address or network "
                             "(names cannot be matched: the collector sees addresses)") from None
        patterns.append(Pattern(network, int(port)))
    return patterns


def split_endpoint(name: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """'10.0.0.1:80' / '[::1]:80' -> (address, port); None for a DNS name or a malformed one."""
    host, _, port = name.rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        return None


def canonical(name: str) -> str:
    """The collector's spelling of an endpoint (compressed IPv6 in brackets); names stay as they are."""
    parsed = split_endpoint(name)
    if parsed is None:
        return name
    address, port = parsed
    return f"[{address.compressed}]:{port}" if address.version == 6 else f"{address}:{port}"


def signal_of(service_row: Mapping[str, Any]) -> Signal:
    value = str(service_row.get("signal") or "auto")
    return value if value in SIGNALS else "auto"  # type: ignore[return-value]


def pattern_ports(services: Iterable[Mapping[str, Any]]) -> set[int]:
    """Ports named by the discover patterns of services not on "rpc"."""
    return {p.port for s in services if signal_of(s) != "rpc" for p in parse_patterns(str(s.get("discover") or ""))}


def tcp_ports(services: Sequence[Mapping[str, Any]], instances: Iterable[Mapping[str, Any]]) -> set[int]:
    """Remote ports worth reading connections for: IP instances and patterns of services not on "rpc"."""
    signals = {s["service"]: signal_of(s) for s in services}
    ports = pattern_ports(services)
    for row in instances:
        parsed = split_endpoint(row["instance"])
        if parsed is not None and signals.get(row["service"], "auto") != "rpc":
            ports.add(parsed[1])
    return ports


def discovered_tcp(endpoints: Iterable[str], services: Iterable[Mapping[str, Any]],
                   known: set[tuple[str, str]], now_ms: int) -> list[dict[str, Any]]:
    """Registry instance rows for endpoints that match a service's patterns and are not registered yet."""
    stamp = {"source": "discovered", "deleted": 0, "changed_ms": now_ms, "changed_by": "svcpulse"}
    rows = []
    candidates = [(s["service"], parse_patterns(str(s.get("discover") or ""))) for s in services
                  if signal_of(s) != "rpc"]
    for name in sorted(endpoints):
        parsed = split_endpoint(name)
        if parsed is None:
            continue
        for service, patterns in candidates:
            if (service, name) not in known and any(p.matches(*parsed) for p in patterns):
                rows.append({"service": service, "instance": name, "static_weight": STATIC_WEIGHT, "version": "",
                             "enabled": 1, **stamp})
    return rows


def attach_tcp(windows: Mapping[str, Sequence[InstanceWindow]], tcp: Mapping[str, TcpWindow],
               signals: Mapping[str, Signal]) -> dict[str, list[InstanceWindow]]:
    """Each window with its service's signal and, unless that is "rpc", its callers' connections."""
    out: dict[str, list[InstanceWindow]] = {}
    for service, service_windows in windows.items():
        signal = signals.get(service, "auto")
        out[service] = [replace(w, signal=signal, tcp=None if signal == "rpc" else tcp.get(canonical(w.instance)))
                        for w in service_windows]
    return out
