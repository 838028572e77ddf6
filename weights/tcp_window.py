"""Callers' connections per endpoint, in memory, for the weigh worker (the streaming twin of the
tcp_connections query in api/queries/tcp_health.py). Pure data structure: no I/O, no clock.

Every client-side tcp event with a known outcome, to a port the worker cares about (`ports`: those of
IP instances of services not on signal "rpc", weights/tcp_inputs.tcp_ports), is counted in the
bucket of its second: outcomes, retransmits, and DDSketches of the handshake time and the smoothed
RTT (weights/sketch.py, as for call latency). `windows(now_ms)` gives one TcpWindow per endpoint over
the last `window_s`. Memory is bounded twice: only wanted ports are kept, and at most `max_endpoints`
endpoints (an endpoint beyond it is counted in `dropped`, never stored).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from weights.sketch import DDSketch, merged
from weights.tcp import TcpWindow
from weights.tcp_inputs import endpoint_of

FUTURE_SLACK_MS = 60_000  # events stamped further ahead (clock skew, hostile) get no bucket
_COUNTED = {"refused": "refused", "timeout": "timeouts", "unreachable": "unreachable", "reset": "resets",
            "aborted": "aborted"}


@dataclass
class TcpBucket:
    attempts: int = 0
    refused: int = 0
    timeouts: int = 0
    unreachable: int = 0
    resets: int = 0
    aborted: int = 0
    retransmits: int = 0
    connect: DDSketch = field(default_factory=DDSketch)
    srtt: DDSketch = field(default_factory=DDSketch)


class TcpWindows:
    def __init__(self, window_s: int, max_endpoints: int = 100_000) -> None:
        self.window_s, self.max_endpoints = window_s, max_endpoints
        self.ports: frozenset[int] = frozenset()
        self.endpoints: dict[str, dict[int, TcpBucket]] = {}
        self.dropped = 0  # events of endpoints past max_endpoints

    def want(self, ports: Collection[int]) -> None:
        """The remote ports worth counting from now on; endpoints on other ports are forgotten."""
        self.ports = frozenset(ports)
        for name in [n for n in self.endpoints if int(n.rsplit(":", 1)[1]) not in self.ports]:
            del self.endpoints[name]

    def add(self, event: Mapping[str, Any], now_ms: int) -> bool:
        """Count one validated tcp event (pipeline/events.py); False when it is not one the weights use."""
        outcome, ts_ms = event["outcome"], event["ts_ms"]
        if event["role"] != "client" or not outcome or event["rport"] not in self.ports:
            return False
        if not now_ms - (self.window_s + 1) * 1000 <= ts_ms <= now_ms + FUTURE_SLACK_MS:
            return False
        name = endpoint_of(event["raddr"], event["rport"])
        buckets = self.endpoints.get(name)
        if buckets is None:
            if len(self.endpoints) >= self.max_endpoints:
                self.dropped += 1
                return False
            buckets = self.endpoints[name] = {}
        bucket = buckets.get(ts_ms // 1000)
        if bucket is None:
            bucket = buckets[ts_ms // 1000] = TcpBucket()
        bucket.attempts += 1
        if outcome in _COUNTED:
            setattr(bucket, _COUNTED[outcome], getattr(bucket, _COUNTED[outcome]) + 1)
        bucket.retransmits += event["retransmits"]
        if event["connect_ms"] > 0:
            bucket.connect.add(event["connect_ms"])
        if event["srtt_us"] > 0:
            bucket.srtt.add(event["srtt_us"] / 1000)
        return True

    def expire(self, now_ms: int) -> None:
        """Drop buckets that left the window, and endpoints left with none."""
        oldest = (now_ms - self.window_s * 1000) // 1000 - 1
        for name in list(self.endpoints):
            buckets = self.endpoints[name]
            for second in [s for s in buckets if s < oldest]:
                del buckets[second]
            if not buckets:
                del self.endpoints[name]

    def windows(self, now_ms: int) -> dict[str, TcpWindow]:
        """{endpoint: TcpWindow} over the last window_s seconds (endpoints with no connection left out)."""
        first = (now_ms - self.window_s * 1000) // 1000
        out = {}
        for name, buckets in self.endpoints.items():
            inside = [b for second, b in buckets.items() if second >= first]
            if inside:
                out[name] = _window(inside)
        return out


def _window(buckets: list[TcpBucket]) -> TcpWindow:
    connect = merged(b.connect for b in buckets).quantiles((0.5, 0.99))
    srtt = merged(b.srtt for b in buckets).quantiles((0.5, 0.99))
    counts = {name: sum(getattr(b, name) for b in buckets)
              for name in ("attempts", "refused", "timeouts", "unreachable", "resets", "aborted", "retransmits")}
    return TcpWindow(**counts, connect_ms_p50=connect[0], connect_ms_p99=connect[1], srtt_ms_p50=srtt[0],
                     srtt_ms_p99=srtt[1])
