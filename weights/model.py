"""Inputs, outputs, state and parameters of the weight engine (see docs/weights.md).

Everything here is a plain frozen dataclass so the engine stays a pure function:
`(windows, previous EngineState, now_ms, config, overrides) -> EngineResult(new EngineState, ...)`.
The caller owns the state between cycles (in memory in the API; it is small and cheap to rebuild:
a cold start only means new instances are not slow-started and ejection counts start at zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from weights.tcp import Signal, TcpWindow

State = Literal["healthy", "degraded", "ejected", "slow_start", "drained", "new"]
Mode = Literal["normal", "protective"]
STATIC_WEIGHT = 100  # MSEC's registry weight; the published scale is 0..static_weight per instance


@dataclass(frozen=True)
class EngineConfig:
    """Every tunable of the engine. Defaults assume a cycle of ~5 s over a window of ~10 s."""

    window_s: int = 10  # the data window the caller queries; reported in the feed
    min_requests: int = 20  # calls in the window needed before a weight may be CUT (noise guard)
    recover_min_requests: int = 5  # calls needed to RAISE a weight (probed instances see few calls)
    success_good: float = 0.98  # MSEC's bar: success at or above min(this, fleet median) costs nothing
    success_exponent: float = 8.0  # (s / bar) ** 8 = MSEC's per-5 s s**2 cut applied 4 times (~20 s)
    latency_tolerance: float = 1.25  # up to 1.25x the fleet median latency costs nothing (jitter)
    latency_exponent: float = 2.0  # PeakEWMA: cost ~ latency x in-flight, and in-flight ~ latency
    latency_slack_ms: float = 5.0  # added to both sides so 1 ms vs 2 ms is not a 2x "slowdown"
    recovery_per_s: float = 0.02  # health regained per second (10% of static per 5 s cycle)
    degraded_below: float = 0.9  # health under this is reported as "degraded"
    eject_success_floor: float = 0.8  # absolute floor: below this success an instance is ejected
    eject_min_requests: int = 50  # calls needed before any ejection (Envoy failure-percentage: 50)
    outlier_min_hosts: int = 5  # hosts with enough calls needed for the fleet-relative rule (Envoy)
    outlier_stdev_factor: float = 1.9  # eject below mean - 1.9 x stdev (Envoy success_rate_stdev)
    outlier_min_gap: float = 0.05  # ...and at least 5 points below the mean, so tight fleets are safe
    max_ejected_fraction: float = 0.1  # at most 10% of active hosts ejected, at least 1 when >= 2 hosts
    base_ejection_s: float = 30.0  # ejection time = 30 s x times ejected (Envoy)
    max_ejection_s: float = 300.0  # ...capped at 300 s
    ejection_forgive_s: float = 300.0  # one past ejection is forgotten per 300 s since the last one
    probe_share: float = 0.01  # ejected/zero-weight instances share at most ~1% of total weight (MSEC)
    probe_calls: int = 10  # ...and only what they need: calls per window to see a recovery (2x recover_min)
    slow_start_s: float = 30.0  # linear ramp for new, un-ejected and un-drained instances
    slow_start_min: float = 0.1  # the ramp starts at 10% of the instance's weight
    protective_fraction: float = 0.5  # more than half the judged fleet degraded together -> protective
    protective_health: float = 0.5  # "degraded" for that count: health at the absolute bar < 0.5
    # Judging by TCP connections (weights/tcp.py); counts (min_requests, eject_*) apply to connections.
    tcp_success_good: float = 0.99  # a healthy fleet refuses, drops or resets ~no connections
    tcp_success_confidence_z: float = 1.96  # cut only if the Wilson bound (95%) of success is below the bar too
    tcp_latency_tolerance: float = 2.0  # handshake/RTT up to 2x the fleet's costs nothing (kernel work)
    tcp_latency_slack_ms: float = 5.0  # sub-ms loopback/LAN jitter is not a slowdown
    tcp_retransmit_slack: float = 0.1  # retransmits per connection added to both sides of the ratio
    tcp_retransmit_tolerance: float = 2.0  # up to 2x the fleet's (slackened) retransmit rate is free


DEFAULT_CONFIG = EngineConfig()


@dataclass(frozen=True)
class InstanceWindow:
    """What one instance did over the last `window_s` seconds, plus its registry entry."""

    instance: str  # "host:port"
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    latency_ms_p50: float = 0.0
    latency_ms_p99: float = 0.0
    rps: float = 0.0
    static_weight: int = STATIC_WEIGHT
    version: str = ""
    enabled: bool = True  # registry status; disabled instances are reported as drained
    tcp: TcpWindow | None = None  # callers' connections to it over the window (collect tcp), if known
    signal: Signal = "auto"  # the service's registry choice: rpc, tcp or auto (weights/tcp.py)

    @property
    def success_rate(self) -> float | None:
        if self.requests <= 0:
            return None
        failed = min(self.requests, self.errors + self.timeouts)
        return (self.requests - failed) / self.requests


@dataclass(frozen=True)
class Override:
    """Operator decisions for one instance; they win over everything the data says."""

    drained: bool = False  # weight 0, state "drained"
    pinned_weight: int | None = None  # publish exactly this weight (health is still reported)


@dataclass(frozen=True)
class InstanceState:
    """What the engine remembers about one instance between cycles."""

    weight: int  # last published weight
    state: State
    health: float  # 0..1, the data-driven part of the weight before ramp and probe
    first_seen_ms: int
    ejections: int = 0  # times ejected (decays, see EngineConfig.ejection_forgive_s)
    ejected_until_ms: int | None = None  # kept after it passes: ejection decay counts from here
    eject_reason: str = ""  # why the current ejection happened, repeated while it lasts
    ramp_since_ms: int | None = None  # slow start began here (None = not ramping)
    probe_from_ms: int | None = None  # a renewed ejection rests (weight 0, no probe) until here


@dataclass(frozen=True)
class EngineState:
    updated_ms: int = 0
    instances: Mapping[str, InstanceState] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class InstanceResult:
    """One row of the feed (DESIGN.md, weight feed)."""

    instance: str
    weight: int
    state: State
    reason: str
    success_rate: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    rps: float
    version: str
    signal: Literal["rpc", "tcp"] = "rpc"  # what judged it; with "tcp" the statistics are connections'


@dataclass(frozen=True)
class EngineResult:
    state: EngineState  # pass back in as `previous` next cycle
    mode: Mode
    instances: tuple[InstanceResult, ...]
    generated_at_ms: int
    window_s: int
