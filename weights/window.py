"""Sliding call windows in memory: per (service, instance, side), per-second buckets of counts and a
latency sketch (weights/sketch.py). Pure data structure, no I/O, no clock: callers pass event times
and `now_ms`. The weigh worker feeds it from svcpulse.rpc and reads `rows()` every tick.

`rows()` has exactly the shape of the ClickHouse scan it replaces (api/queries/weights.py,
observed_instances): {service, instance, side, last_ms, requests, errors, timeouts, p50, p99,
version} per key seen within `forget_s`, with the counts of the last `window_s` seconds, so
weights/inputs.py assembles engine inputs from either source the same way. The interfaces each
service served are kept beside (at most `max_interfaces` names per service, for the caps of
weights/caps.py), so a flood of interface names costs no memory past that bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from weights.sketch import DDSketch, merged

FUTURE_SLACK_MS = 60_000  # events stamped further ahead than this (clock skew, hostile) get no bucket
Seen = tuple[str, str, int, str]  # (instance, side, last_ms, version)


@dataclass
class Bucket:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    sketch: DDSketch = field(default_factory=DDSketch)


@dataclass
class Series:
    """One (instance, side)'s buckets (second -> Bucket), its newest call time and that call's version."""

    buckets: dict[int, Bucket] = field(default_factory=dict)
    last_ms: int = 0
    version: str = ""


class Windows:
    def __init__(self, window_s: int, forget_s: int, max_interfaces: int = 0) -> None:
        self.window_s, self.forget_s, self.max_interfaces = window_s, forget_s, max_interfaces
        self.services: dict[str, dict[tuple[str, str], Series]] = {}
        self.interfaces: dict[str, dict[str, int]] = {}  # service -> interface -> last seen ms

    def add(self, event: Mapping[str, Any], now_ms: int) -> None:
        """One validated rpc event (pipeline/events.py): count it in the bucket of its second."""
        service, instance, ts_ms = event["callee"], event["instance"], event["ts_ms"]
        if not service or not instance or ts_ms > now_ms + FUTURE_SLACK_MS:
            return
        keys = self.services.get(service)
        if keys is None:
            keys = self.services[service] = {}
        series = keys.get((instance, event["side"]))
        if series is None:
            series = keys[(instance, event["side"])] = Series()
        if ts_ms >= series.last_ms:
            series.last_ms, series.version = ts_ms, event["version"]
        self._interface(service, event.get("interface", ""), ts_ms)
        if ts_ms < now_ms - (self.window_s + 1) * 1000:
            return  # too old to judge; it still proves the instance exists (last_ms)
        bucket = series.buckets.get(ts_ms // 1000)
        if bucket is None:
            bucket = series.buckets[ts_ms // 1000] = Bucket()
        bucket.requests += 1
        status = event["status"]
        if status == "error":
            bucket.errors += 1
        elif status == "timeout":
            bucket.timeouts += 1
        bucket.sketch.add(event["latency_ms"])

    def _interface(self, service: str, interface: str, ts_ms: int) -> None:
        names = self.interfaces.setdefault(service, {})
        if interface in names:
            names[interface] = max(names[interface], ts_ms)
        elif interface and len(names) < self.max_interfaces:
            names[interface] = ts_ms

    def seed(self, service: str, seen: Iterable[Seen]) -> None:
        """Remember who called in and when (membership restored from a feed message: no buckets)."""
        keys = self.services.setdefault(service, {})
        for instance, side, last_ms, version in seen:
            series = keys.setdefault((instance, side), Series())
            if last_ms > series.last_ms:
                series.last_ms, series.version = last_ms, version

    def expire(self, now_ms: int) -> None:
        """Drop buckets that left the window and keys not seen within forget_s."""
        oldest_second = (now_ms - self.window_s * 1000) // 1000 - 1
        forget_before = now_ms - self.forget_s * 1000
        for service in list(self.services):
            keys = self.services[service]
            for key in [k for k, s in keys.items() if s.last_ms < forget_before]:
                del keys[key]
            names = self.interfaces.get(service, {})
            for name in [n for n, last_ms in names.items() if last_ms < forget_before]:
                del names[name]
            if not keys:
                del self.services[service]
                self.interfaces.pop(service, None)
            for series in keys.values():
                for second in [s for s in series.buckets if s < oldest_second]:
                    del series.buckets[second]

    def rows(self, now_ms: int, services: Iterable[str]) -> list[dict[str, Any]]:
        """One row per key of `services` seen within forget_s, counted over the last window_s."""
        first_second = (now_ms - self.window_s * 1000) // 1000
        forget_before = now_ms - self.forget_s * 1000
        return [_row(service, key, series, first_second) for service in services
                for key, series in self.services.get(service, {}).items() if series.last_ms >= forget_before]

    def served(self, services: Iterable[str]) -> dict[str, dict[str, int]]:
        """Interface -> last seen ms, per service of `services`, within forget_s (at most max_interfaces each)."""
        return {s: dict(self.interfaces[s]) for s in services if self.interfaces.get(s)}

    def seen(self, service: str) -> list[Seen]:
        return sorted((k[0], k[1], s.last_ms, s.version) for k, s in self.services.get(service, {}).items())

    def drop(self, services: Iterable[str]) -> None:
        """Forget these services (their partition moved to another worker)."""
        for service in services:
            self.services.pop(service, None)
            self.interfaces.pop(service, None)


def _row(service: str, key: tuple[str, str], series: Series, first_second: int) -> dict[str, Any]:
    inside = [b for second, b in series.buckets.items() if second >= first_second]
    p50, p99 = merged(b.sketch for b in inside).quantiles((0.5, 0.99))
    return {"service": service, "instance": key[0], "side": key[1], "last_ms": series.last_ms,
            "requests": sum(b.requests for b in inside), "errors": sum(b.errors for b in inside),
            "timeouts": sum(b.timeouts for b in inside), "p50": p50, "p99": p99, "version": series.version}
