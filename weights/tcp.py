"""Judging an instance by its callers' TCP connections (pure): no code in the service needed.

`collect tcp` sees every connection callers open to an instance's ip:port: refused, unanswered
(timeout), unreachable, reset by the instance, retransmitting, and how long the handshake and the
round trip took. `TcpWindow` holds that over the engine's window; this module turns it into the same
`Score` and ejection reasons the rpc rules give, against a fleet norm of its own (connect latency is
not comparable with call latency), so one engine applies ejection with backoff, probes, slow start,
protective mode and the eject cap to both. Which signal judges an instance (`judged_by`):

- signal "rpc": calls only (TCP is ignored);  signal "tcp": connections only;
- signal "auto" (default): calls where the window has any, else connections; and where both exist
  the connections can only LOWER what the calls say (scoring.score takes the lower target).

Every reason from here starts with "from TCP:" and gives the figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from weights.norms import success_factor, success_norm

if TYPE_CHECKING:
    from weights.model import EngineConfig, InstanceWindow
    from weights.scoring import Score

Signal = Literal["rpc", "tcp", "auto"]
SIGNALS: tuple[Signal, ...] = ("rpc", "tcp", "auto")


@dataclass(frozen=True)
class TcpWindow:
    """Client-side connections to one instance that ended within the window (outcome known)."""

    attempts: int = 0
    refused: int = 0  # a RST answered the SYN: nothing listens
    timeouts: int = 0  # the SYN was never answered (or ETIMEDOUT later)
    unreachable: int = 0  # ICMP unreachable
    resets: int = 0  # the instance reset an established connection
    aborted: int = 0  # the caller reset it: its own choice, not held against the instance
    retransmits: int = 0
    connect_ms_p50: float = 0.0
    connect_ms_p99: float = 0.0
    srtt_ms_p50: float = 0.0
    srtt_ms_p99: float = 0.0

    @property
    def failures(self) -> int:
        return min(self.attempts, self.refused + self.timeouts + self.unreachable + self.resets)

    @property
    def success_rate(self) -> float | None:
        return (self.attempts - self.failures) / self.attempts if self.attempts > 0 else None

    @property
    def retransmit_rate(self) -> float:
        """Retransmitted segments per connection (a healthy LAN shows ~0)."""
        return self.retransmits / self.attempts if self.attempts > 0 else 0.0

    def failure_text(self) -> str:
        parts = [(self.refused, "refused"), (self.timeouts, "timed out"), (self.unreachable, "unreachable"),
                 (self.resets, "reset")]
        return ", ".join(f"{n} {what}" for n, what in parts if n) or "no failures"


@dataclass(frozen=True)
class TcpFleet:
    """The norm among active instances with enough connections (medians: one bad host moves nothing)."""

    bar: float
    median_connect: tuple[float, float] | None  # (p50, p99) ms
    median_srtt: tuple[float, float] | None
    median_retransmit_rate: float
    mean_success: float | None  # over instances with >= eject_min_requests, None below outlier_min_hosts
    stdev_success: float | None


def judged_by(window: InstanceWindow) -> Literal["rpc", "tcp"]:
    """Which signal sets this instance's health (see the module doc)."""
    if window.signal == "tcp":
        return "tcp"
    if window.signal == "rpc" or window.requests > 0 or window.tcp is None or window.tcp.attempts == 0:
        return "rpc"
    return "tcp"


def tcp_evidence(window: InstanceWindow, config: EngineConfig) -> TcpWindow | None:
    """The connections that may act on this instance: judged by them, or lowering an rpc judgement."""
    tcp = window.tcp
    if tcp is None or window.signal == "rpc":
        return None
    if judged_by(window) == "rpc" and tcp.attempts < config.min_requests:
        return None  # too few connections to overrule the calls
    return tcp


def absolute_fleet(config: EngineConfig) -> TcpFleet:
    """No fleet to compare with: the absolute bar only (protective mode's view)."""
    return TcpFleet(config.tcp_success_good, None, None, 0.0, None, None)


def tcp_fleet(active: Sequence[InstanceWindow], config: EngineConfig) -> TcpFleet:
    windows = [w.tcp for w in active if w.tcp is not None and w.signal != "rpc"]
    judged = [t for t in windows if t.attempts >= config.min_requests]
    volume = [_success(t) for t in windows if t.attempts >= config.eject_min_requests]
    bar, mean, stdev = success_norm([_success(t) for t in judged], volume, config.tcp_success_good, config)
    return TcpFleet(
        bar=bar,
        median_connect=_medians([(t.connect_ms_p50, t.connect_ms_p99) for t in judged]),
        median_srtt=_medians([(t.srtt_ms_p50, t.srtt_ms_p99) for t in judged]),
        median_retransmit_rate=statistics.median([t.retransmit_rate for t in judged]) if judged else 0.0,
        mean_success=mean,
        stdev_success=stdev,
    )


def tcp_score(tcp: TcpWindow, fleet: TcpFleet, config: EngineConfig) -> Score:
    """Success factor as for calls; latency factor from the worse of handshake and RTT against the
    fleet, times a retransmit factor (loss shows as retransmits long before it shows as failures)."""
    from weights.scoring import Score  # scoring imports this module

    success, bar = _success(tcp), fleet.bar
    s_factor = success_factor(success, tcp.attempts, bar, config, config.tcp_success_confidence_z)
    ratio = max(_ratio((tcp.connect_ms_p50, tcp.connect_ms_p99), fleet.median_connect, config),
                _ratio((tcp.srtt_ms_p50, tcp.srtt_ms_p99), fleet.median_srtt, config))
    tolerance = config.tcp_latency_tolerance
    l_factor = 1.0 if ratio <= tolerance else (tolerance / ratio) ** config.latency_exponent
    r_ratio = (tcp.retransmit_rate + config.tcp_retransmit_slack) / (
        fleet.median_retransmit_rate + config.tcp_retransmit_slack)
    r_factor = 1.0 if r_ratio <= config.tcp_retransmit_tolerance else config.tcp_retransmit_tolerance / r_ratio
    text = _text(tcp, fleet, s_factor, l_factor, r_factor)
    return Score(tcp.attempts, s_factor, l_factor * r_factor, text, unit="connections")


def _text(tcp: TcpWindow, fleet: TcpFleet, s_factor: float, l_factor: float, r_factor: float) -> str:
    success = f"{_pct(_success(tcp))} of {tcp.attempts} connections ok ({tcp.failure_text()})"
    if s_factor < 1.0:
        success = (f"{_pct(_success(tcp))} of {tcp.attempts} connections ok < bar {_pct(fleet.bar)} "
                   f"({tcp.failure_text()}) (x{s_factor:.2f})")
    elif _success(tcp) < fleet.bar:
        success += f", within chance of bar {_pct(fleet.bar)}"
    latency = (f"handshake p50 {tcp.connect_ms_p50:.1f} ms, p99 {tcp.connect_ms_p99:.1f} ms; "
               f"srtt p50 {tcp.srtt_ms_p50:.1f} ms, p99 {tcp.srtt_ms_p99:.1f} ms")
    if fleet.median_connect is not None:
        latency += f" (fleet handshake {fleet.median_connect[0]:.1f}/{fleet.median_connect[1]:.1f} ms)"
    if l_factor < 1.0:
        latency += f" (x{l_factor:.2f})"
    retransmits = f"{tcp.retransmit_rate:.2f} retransmits/connection"
    if r_factor < 1.0:
        retransmits += f" vs fleet {fleet.median_retransmit_rate:.2f} (x{r_factor:.2f})"
    return f"from TCP: {success}; {latency}; {retransmits}"


def tcp_ejection_reason(tcp: TcpWindow, fleet: TcpFleet, config: EngineConfig) -> str | None:
    """The call rules' floor and outlier tests, on connect success (aborted connections are not failures)."""
    if tcp.attempts < config.eject_min_requests:
        return None
    success = _success(tcp)
    ok, failed = f"{_pct(success)} of {tcp.attempts} connections ok", f"({tcp.failure_text()})"
    if success < config.eject_success_floor:
        return f"from TCP: {ok} < floor {_pct(config.eject_success_floor)} {failed}"
    if fleet.mean_success is None or fleet.stdev_success is None:
        return None
    spread = config.outlier_stdev_factor * fleet.stdev_success
    if success < fleet.mean_success - max(spread, config.outlier_min_gap):
        return (f"from TCP: {ok} < fleet mean {_pct(fleet.mean_success)} - "
                f"{config.outlier_stdev_factor} x stdev {_pct(fleet.stdev_success)} {failed}")
    return None


def _ratio(own: tuple[float, float], norm: tuple[float, float] | None, config: EngineConfig) -> float:
    """Geometric mean of the p50 and p99 ratios to the fleet medians, with slack (as for calls)."""
    if norm is None:
        return 1.0
    slack = config.tcp_latency_slack_ms
    return math.sqrt((own[0] + slack) / (norm[0] + slack) * (own[1] + slack) / (norm[1] + slack))


def _medians(pairs: list[tuple[float, float]]) -> tuple[float, float] | None:
    if not pairs:
        return None
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def _success(tcp: TcpWindow) -> float:
    rate = tcp.success_rate
    return 1.0 if rate is None else rate


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"
