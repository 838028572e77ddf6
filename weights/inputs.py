"""Pure transforms from stored rows to engine inputs: observed calls + registry -> InstanceWindows.

Which instances a service has is decided before this module, by weights/admission.py: every live
registry entry (registered through the API, including IP:port-only services that emit no telemetry)
plus the observed instances a discovery policy admits. Registry entries win for static weight,
version and enabled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from weights.model import STATIC_WEIGHT, InstanceWindow, Override

Key = tuple[str, str]  # (service, instance)


def pick_sides(observed: Iterable[Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
    """One row per instance: the server's own measurement, unless clients saw more calls.

    The server side times the handler alone, so it is the better latency; but calls that never
    reached the handler (refused connections, timeouts, a dead process) exist only on the client
    side, and preferring an empty server row would hide exactly the worst failures.
    """
    chosen: dict[Key, Mapping[str, Any]] = {}
    for row in observed:
        key = (row["service"], row["instance"])
        other = chosen.get(key)
        if other is None or _better(row, other):
            chosen[key] = row
    return chosen


def _better(row: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    server, client = (row, other) if row["side"] == "server" else (other, row)
    preferred = client if client["requests"] > server["requests"] else server
    return preferred is row


def build_windows(
    observed: Iterable[Mapping[str, Any]],
    registry: Iterable[Mapping[str, Any]],
    window_s: int,
) -> dict[str, list[InstanceWindow]]:
    """Per service, one InstanceWindow per registered or recently observed instance, by name."""
    seen = pick_sides(observed)
    registered = {(r["service"], r["instance"]): r for r in registry}
    by_service: dict[str, list[InstanceWindow]] = defaultdict(list)
    for key in sorted(seen.keys() | registered.keys()):
        by_service[key[0]].append(_window(key[1], seen.get(key), registered.get(key), window_s))
    return dict(by_service)


def _window(instance: str, seen: Mapping[str, Any] | None, entry: Mapping[str, Any] | None,
            window_s: int) -> InstanceWindow:
    requests = int(seen["requests"]) if seen else 0
    observed_version = str(seen["version"]) if seen else ""
    return InstanceWindow(
        instance=instance,
        requests=requests,
        errors=int(seen["errors"]) if seen else 0,
        timeouts=int(seen["timeouts"]) if seen else 0,
        latency_ms_p50=float(seen["p50"]) if seen else 0.0,
        latency_ms_p99=float(seen["p99"]) if seen else 0.0,
        rps=requests / window_s,
        static_weight=int(entry["static_weight"]) if entry else STATIC_WEIGHT,
        version=(entry and entry["version"]) or observed_version,
        enabled=bool(entry["enabled"]) if entry else True,
    )


def to_overrides(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Override]]:
    """Live override rows -> {service: {instance: Override}}; pinned_weight < 0 means not pinned."""
    out: dict[str, dict[str, Override]] = defaultdict(dict)
    for row in rows:
        pin = int(row["pinned_weight"])
        out[row["service"]][row["instance"]] = Override(drained=bool(row["drained"]),
                                                        pinned_weight=pin if pin >= 0 else None)
    return dict(out)


def normalize_instance(value: str) -> str:
    """'host:port' (IPv6 as '[addr]:port'), trimmed; a ValueError says what was expected."""
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"instance {value!r}: expected host:port with a port 1..65535, e.g. 10.0.0.7:8080")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"instance {value!r}: write IPv6 addresses in brackets, e.g. [::1]:8080")
    if any(c.isspace() or c == "/" for c in host):
        raise ValueError(f"instance {value!r}: host may not contain spaces or '/'")
    return f"{host}:{int(port)}"
