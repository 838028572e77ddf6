"""One weight cycle for a set of services, pure: observed calls + control tables + engine memory -> feeds.

The weigh worker calls `run_cycle` every tick for the services whose partition it owns; it does the
I/O around it (publishing feeds, sending intents, writing history). Nothing here reads a clock or a
store, so the same inputs give the same feeds (and tests need no broker). `assemble_inputs` is the
one place engine inputs are built: telemetry only describes endpoints, so it applies who may create a
routable one (weights/admission.py) and how many entities telemetry may create (weights/caps.py), then
attaches callers' TCP connections (weights/tcp_window.py) for services whose registry signal is not
"rpc" (weights/tcp.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from weights.admission import Admission, admit
from weights.canary import CanaryGuard, canary_verdict
from weights.caps import Caps, Ledger, Observation, Tracked, observations, track
from weights.control import ControlView
from weights.engine import compute_weights
from weights.feed import apply_canary, build_feed
from weights.inputs import build_windows
from weights.model import EngineConfig, EngineState, InstanceWindow
from weights.tcp import TcpWindow
from weights.tcp_inputs import attach_tcp, signal_of, tcp_ports

SYSTEM = "svcpulse"  # the "user" recorded when the control loop itself changes something


@dataclass(frozen=True)
class Bounds:
    """What telemetry may create (weights/caps.py): the caps, when an observation expires, and the ledger
    of what it created so far (the worker keeps the returned one for its next cycle)."""

    caps: Caps = field(default_factory=Caps)
    forget_ms: int = 300_000
    ledger: Ledger = field(default_factory=Ledger)


@dataclass(frozen=True)
class Inputs:
    windows: dict[str, list[InstanceWindow]]  # engine inputs of the routable instances, per service
    services: frozenset[str]  # services that publish a feed (registered, or with an admitted instance)
    tracked: Tracked  # the caps' verdict: the new ledger, what was refused
    admission: Admission


@dataclass(frozen=True)
class CycleResult:
    feeds: dict[str, dict[str, Any]]
    states: dict[str, EngineState]
    tracked: Tracked
    aborts: list[dict[str, Any]] = field(default_factory=list)  # release rows now "aborted", to record once


def assemble_inputs(observed: Sequence[Mapping[str, Any]], control: ControlView, window_s: int, now_ms: int,
                    bounds: Bounds, interfaces: Mapping[str, Mapping[str, int]] | None = None,
                    tcp: Mapping[str, TcpWindow] | None = None) -> Inputs:
    """Engine inputs: registered instances, and observed ones a discovery policy admits (weights/admission.py),
    of what the cardinality caps let telemetry create (weights/caps.py). `interfaces`: per service, the
    interfaces it served -> last seen ms (weights/window.py `served`); `tcp`: callers' connections per
    endpoint ("ip:port") over the window."""
    made = control.authority()
    seen = observations(observed) + [Observation(service, "", max(names.values()), tuple(sorted(names)))
                                     for service, names in (interfaces or {}).items() if names]
    tracked = track(bounds.ledger, seen, now_ms, bounds.caps, bounds.forget_ms, made.operator_made,
                    made.instances.keys())
    accepted = [row for row in observed if (row["service"], row["instance"]) in tracked.accepted]
    admission = admit(accepted, made, now_ms, bounds.forget_ms)
    windows = build_windows(admission.observations(accepted), admission.routable, window_s)
    signals = {r["service"]: signal_of(r) for r in control.live("registry_services")}
    windows = attach_tcp(windows, tcp or {}, signals)
    return Inputs(windows, frozenset(admission.feed_services | windows.keys()), tracked, admission)


def wanted_ports(control: ControlView) -> set[int]:
    """Remote ports whose connections the worker should count (IP instances of services not on "rpc")."""
    return tcp_ports(control.live("registry_services"), control.live("registry_instances"))


def run_cycle(observed: Sequence[Mapping[str, Any]], control: ControlView, previous: Mapping[str, EngineState],
              now_ms: int, config: EngineConfig, canary_min_requests: int,
              owns: Callable[[str], bool] = lambda _: True, bounds: Bounds | None = None,
              interfaces: Mapping[str, Mapping[str, int]] | None = None,
              tcp: Mapping[str, TcpWindow] | None = None) -> CycleResult:
    """Step the engine once for every owned service that publishes a feed (see `assemble_inputs`)."""
    inputs = assemble_inputs(observed, control, config.window_s, now_ms, bounds or Bounds(), interfaces, tcp)
    overrides, releases = control.overrides(), control.releases()
    feeds, states, aborts = {}, {}, []
    for service in sorted(s for s in inputs.services if owns(s)):
        service_windows = inputs.windows.get(service, [])
        result = compute_weights(service_windows, previous.get(service, EngineState()), now_ms, config,
                                 overrides.get(service))
        states[service] = result.state
        release = releases.get(service)
        aborted = _abort_if_worse(service_windows, release, canary_min_requests, now_ms)
        if aborted is not None:
            aborts.append(aborted)
            release = aborted
        feeds[service] = with_release(build_feed(service, result), release)
    return CycleResult(feeds, states, inputs.tracked, aborts)


def _abort_if_worse(windows: Sequence[InstanceWindow], release: Mapping[str, Any] | None, min_requests: int,
                    now_ms: int) -> dict[str, Any] | None:
    """The release row aborted (back to 0%) when the canary does worse than the rest, else None."""
    if release is None or release["state"] != "active":
        return None
    guard = CanaryGuard(release["error_margin"], release["p99_margin"], min_requests)
    why = canary_verdict(windows, release["canary_version"], guard)
    if not why:
        return None
    return {**release, "state": "aborted", "reason": f"aborted automatically: {why}",
            "changed_ms": max(now_ms, int(release["changed_ms"]) + 1), "changed_by": SYSTEM}


def with_release(feed: dict[str, Any], release: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply a gray release (active: its percent; aborted: 0%) and describe it in the feed."""
    if release is None or release["state"] not in ("active", "aborted"):
        return feed
    percent = release["percent"] if release["state"] == "active" else 0.0
    out = apply_canary(feed, release["canary_version"], percent)
    out["release"] = {"canary_version": release["canary_version"], "percent": percent,
                      "state": release["state"], "reason": release["reason"]}
    return out
