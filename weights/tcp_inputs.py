"""Pure transforms for TCP-judged instances: registry + connection windows -> engine inputs.

An instance gets callers' connections when its name is an IP literal and port (the collector sees
addresses, not names: a DNS name never matches).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from weights.model import InstanceWindow
from weights.tcp import SIGNALS, Signal, TcpWindow


def split_endpoint(name: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """'10.0.0.1:80' / '[::1]:80' -> (address, port); None for a DNS name or a malformed one."""
    host, _, port = name.rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        return None


def endpoint_of(raddr: str, rport: int) -> str:
    """The instance name of a remote address and port as the collector reports them."""
    return f"[{raddr}]:{rport}" if ":" in raddr else f"{raddr}:{rport}"


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


def tcp_ports(services: Sequence[Mapping[str, Any]], instances: Iterable[Mapping[str, Any]]) -> set[int]:
    """Remote ports worth reading connections for: those of IP instances of services not on "rpc"."""
    signals = {s["service"]: signal_of(s) for s in services}
    ports = set()
    for row in instances:
        parsed = split_endpoint(row["instance"])
        if parsed is not None and signals.get(row["service"], "auto") != "rpc":
            ports.add(parsed[1])
    return ports


def attach_tcp(windows: Mapping[str, Sequence[InstanceWindow]], tcp: Mapping[str, TcpWindow],
               signals: Mapping[str, Signal]) -> dict[str, list[InstanceWindow]]:
    """Each window with its service's signal and, unless that is "rpc", its callers' connections."""
    out: dict[str, list[InstanceWindow]] = {}
    for service, service_windows in windows.items():
        signal = signals.get(service, "auto")
        out[service] = [replace(w, signal=signal, tcp=None if signal == "rpc" else tcp.get(canonical(w.instance)))
                        for w in service_windows]
    return out
