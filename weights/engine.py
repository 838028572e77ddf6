"""The weight engine: one pure step from (recent data, previous state, now) to weights and states.

    result = compute_weights(windows, previous=result.state, now_ms=now, config=EngineConfig())

No I/O and no clock reads: the caller queries the last `config.window_s` seconds of calls per
instance, passes the time in, and keeps `result.state` for the next cycle (every ~5 s).
The rules are explained with worked examples in docs/weights.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from weights.model import (
    DEFAULT_CONFIG,
    EngineConfig,
    EngineResult,
    EngineState,
    InstanceResult,
    InstanceState,
    InstanceWindow,
    Mode,
    Override,
    State,
)
from weights.scoring import (
    Fleet,
    Score,
    choose_ejections,
    degraded_together,
    evidence_calls,
    fleet_stats,
    own_success_factor,
    probe_failure,
    score,
)
from weights.tcp import judged_by

_NO_OVERRIDE = Override()


@dataclass(frozen=True)
class _Cycle:
    """Everything decided for the whole fleet before instances are stepped one by one."""

    now_ms: int
    dt_s: float
    warm: bool  # False on the first cycle: nothing is "new" when everything is
    mode: Mode
    protective_text: str
    fleet: Fleet
    ejections: Mapping[str, str]  # instance -> reason, ejected this cycle
    renewed: frozenset[str]  # of those, ejections renewed because the probe calls still fail
    held_back: Mapping[str, str]  # instance -> reason, would be ejected but for the cap
    config: EngineConfig


@dataclass(frozen=True)
class _Step:
    """One instance after this cycle; `dead` ones get their weight from the probe share."""

    window: InstanceWindow
    state: InstanceState
    weight: int
    reason: str
    dead: bool = False


def compute_weights(
    windows: Sequence[InstanceWindow],
    previous: EngineState,
    now_ms: int,
    config: EngineConfig = DEFAULT_CONFIG,
    overrides: Mapping[str, Override] | None = None,
) -> EngineResult:
    """Step every instance once. Instances missing from `windows` are forgotten."""
    overrides = overrides or {}
    cycle = _plan(windows, previous, now_ms, config, overrides)
    steps = [_step(w, previous.instances.get(w.instance), overrides.get(w.instance), cycle) for w in windows]
    steps = _apply_probe_share(steps, config)
    state = EngineState(now_ms, MappingProxyType({s.window.instance: s.state for s in steps}))
    return EngineResult(state, cycle.mode, tuple(_result(s, config.window_s) for s in steps), now_ms, config.window_s)


def _plan(
    windows: Sequence[InstanceWindow],
    previous: EngineState,
    now_ms: int,
    config: EngineConfig,
    overrides: Mapping[str, Override],
) -> _Cycle:
    active = [w for w in windows if w.enabled and not overrides.get(w.instance, _NO_OVERRIDE).drained]
    fleet = fleet_stats(active, config)
    ejected = {w.instance for w in active if _is_ejected(previous.instances.get(w.instance), now_ms)}
    # An ejection that runs out while the probe calls still fail is renewed (for longer), rather
    # than slow-starting an instance known to be broken; it was in the cap already.
    renewed = {w.instance: why for w in active if _ran_out(previous.instances.get(w.instance), now_ms)
               and (why := probe_failure(w, config))}
    degraded, counted = degraded_together(active, ejected | renewed.keys(), config)
    protective = counted > 0 and degraded > config.protective_fraction * counted
    ejections: dict[str, str] = {}
    held: dict[str, str] = {}
    if not protective:
        pinned = {name for name, o in overrides.items() if o.pinned_weight is not None}
        out = ejected | renewed.keys()
        ejections, held = choose_ejections(active, fleet, len(out), out | pinned, config)
        ejections.update(renewed)
    dt_s = max(0.0, (now_ms - previous.updated_ms) / 1000) if previous.updated_ms else 0.0
    return _Cycle(
        now_ms=now_ms,
        dt_s=dt_s,
        warm=bool(previous.instances),
        mode="protective" if protective else "normal",
        protective_text=f"protective mode: {degraded} of {counted} instances degraded together",
        fleet=fleet,
        ejections=ejections,
        renewed=frozenset(renewed) if not protective else frozenset(),
        held_back=held,
        config=config,
    )


def _step(window: InstanceWindow, prev: InstanceState | None, override: Override | None, c: _Cycle) -> _Step:
    override = override or _NO_OVERRIDE
    if override.drained or not window.enabled:
        return _drained(window, prev, override, c)
    step = _lifecycle(window, prev or _first_sight(c), c)
    pin = override.pinned_weight
    if pin is None:
        return step
    reason = f"pinned to {pin} by operator; {step.reason}"
    return replace(step, state=replace(step.state, weight=pin), weight=pin, dead=False, reason=reason)


def _lifecycle(window: InstanceWindow, prev: InstanceState, c: _Cycle) -> _Step:
    if prev.state == "drained":  # back from a drain: ramp up like a new host
        prev = replace(prev, state="slow_start", ramp_since_ms=c.now_ms, health=1.0)
    if window.instance in c.ejections:
        return _eject(window, prev, c.ejections[window.instance], c)
    if _is_ejected(prev, c.now_ms):
        return _still_ejected(window, prev, c)
    if prev.state == "ejected":  # ejection just ran out: full health, slow start from its end
        prev = replace(prev, state="slow_start", health=1.0, ramp_since_ms=prev.ejected_until_ms)
    return _judge(window, prev, c)


def _judge(window: InstanceWindow, prev: InstanceState, c: _Cycle) -> _Step:
    """Move health towards the score's target: cuts at once, recovery at recovery_per_s.

    The state says what the data says, the reason what was applied: an instance whose own calls are
    bad is "degraded" even when the weight was not cut (protective mode, or a fleet bar that fell
    with the fleet), and the reason says why it was not.
    """
    cfg = c.config
    evidence = score(window, c.fleet, cfg)
    own_bad = evidence_calls(window) >= cfg.min_requests and own_success_factor(window, cfg) < cfg.degraded_below
    step = _next_health(prev.health, evidence, own_bad, c)
    ramp, ramp_text = _ramp(prev, c)
    health = step.health
    state: State = "healthy" if health >= cfg.degraded_below and not own_bad else "degraded"
    if ramp < 1.0:
        state = "new" if prev.state == "new" else "slow_start"
    weight = round(window.static_weight * health * ramp)
    extras = [t for t in (c.held_back.get(window.instance), step.text, ramp_text) if t]
    if c.mode == "protective":
        held = f" (x{evidence.target:.2f} not applied, health kept at {health:.0%})" if step.held else ""
        extras.append(f"{c.protective_text}; weights not cut{held}")
    elif own_bad and evidence.success_factor == 1.0:
        extras.append(f"not cut: the fleet bar fell to {c.fleet.bar:.1%} (median success of the fleet)")
    reason = "; ".join([evidence.text if evidence.calls else f"no {evidence.unit}", *extras])
    ramp_since = prev.ramp_since_ms if ramp < 1.0 else None
    new_state = replace(prev, weight=weight, state=state, health=health, ramp_since_ms=ramp_since)
    return _Step(window, new_state, weight, reason, dead=weight == 0)


@dataclass(frozen=True)
class _Health:
    health: float
    text: str = ""
    held: bool = False  # a cut the data asked for was not applied (protective mode)


def _next_health(health: float, evidence: Score, own_bad: bool, c: _Cycle) -> _Health:
    cfg, target, calls = c.config, evidence.target, evidence.calls
    # Cutting needs min_requests; raising needs fewer, because a cut instance only sees probe traffic
    # and would otherwise never collect enough calls to come back (recovery is gradual anyway).
    if calls < cfg.recover_min_requests or (target < health and calls < cfg.min_requests):
        kept = f"health kept at {health:.0%}"
        return _Health(health, f"{calls} {evidence.unit} < {cfg.min_requests} needed to judge; {kept}")
    if target < health:
        if c.mode == "protective":
            return _Health(health, held=True)
        return _Health(target, f"health cut {health:.0%} -> {target:.0%}")
    if target > health:
        raised = min(target, health + cfg.recovery_per_s * c.dt_s)
        if f"{raised:.0%}" == f"{health:.0%}":  # "0% -> 0%" says nothing
            return _Health(raised)
        # Raised because the fleet bar fell to meet it, not because its calls got better: say so.
        fell = own_bad and evidence.success_factor == 1.0
        verb = "raised (its calls did not improve)" if fell else "recovering"
        return _Health(raised, f"{verb} {health:.0%} -> {raised:.0%} (+{cfg.recovery_per_s:.0%}/s)")
    return _Health(health)


def _ramp(prev: InstanceState, c: _Cycle) -> tuple[float, str]:
    """Slow start: linear from slow_start_min to 1 over slow_start_s (Envoy / nginx slow start)."""
    cfg = c.config
    if prev.ramp_since_ms is None or cfg.slow_start_s <= 0:
        return 1.0, ""
    progress = max(0.0, (c.now_ms - prev.ramp_since_ms) / 1000 / cfg.slow_start_s)
    if progress >= 1.0:
        return 1.0, ""
    ramp = cfg.slow_start_min + (1.0 - cfg.slow_start_min) * progress
    kind = "new instance" if prev.state == "new" else "slow start"
    return ramp, f"{kind}: at {ramp:.0%} of a {cfg.slow_start_s:.0f} s ramp"


def _first_sight(c: _Cycle) -> InstanceState:
    # On the engine's first cycle every instance is "first seen"; ramping them all would change no
    # share and only confuse readers of the feed, so only instances appearing later are "new".
    if c.warm:
        return InstanceState(0, "new", 1.0, first_seen_ms=c.now_ms, ramp_since_ms=c.now_ms)
    return InstanceState(0, "healthy", 1.0, first_seen_ms=c.now_ms)


def _drained(window: InstanceWindow, prev: InstanceState | None, override: Override, c: _Cycle) -> _Step:
    why = "drained by operator" if override.drained else "disabled in registry"
    base = prev or InstanceState(0, "drained", 1.0, first_seen_ms=c.now_ms)
    return _Step(window, replace(base, weight=0, state="drained", ramp_since_ms=None), 0, why)


def _is_ejected(prev: InstanceState | None, now_ms: int) -> bool:
    return prev is not None and prev.ejected_until_ms is not None and now_ms < prev.ejected_until_ms


def _ran_out(prev: InstanceState | None, now_ms: int) -> bool:
    return prev is not None and prev.state == "ejected" and not _is_ejected(prev, now_ms)


def _eject(window: InstanceWindow, prev: InstanceState, why: str, c: _Cycle) -> _Step:
    """Ejection time grows with repeats: base_ejection_s x times, capped (Envoy).

    A renewed ejection (its probe calls still failed) rests without probe calls until its last
    window_s + 5 s: probing sooner only adds failed calls, and the return is decided on fresh ones.
    """
    cfg = c.config
    times = _remembered_ejections(prev, c) + 1
    seconds = min(cfg.base_ejection_s * times, cfg.max_ejection_s)
    until = c.now_ms + int(seconds * 1000)
    reason = f"{why}; ejected {seconds:.0f} s ({_ordinal(times)} time)"
    probe_from = until - (cfg.window_s + 5) * 1000 if window.instance in c.renewed else None
    state = replace(prev, state="ejected", ejections=times, ejected_until_ms=until, eject_reason=reason,
                    ramp_since_ms=None, probe_from_ms=probe_from)
    return _still_ejected(window, state, c) if probe_from else _Step(window, state, 0, reason, dead=True)


def _still_ejected(window: InstanceWindow, prev: InstanceState, c: _Cycle) -> _Step:
    left = ((prev.ejected_until_ms or 0) - c.now_ms) / 1000
    reason = f"{prev.eject_reason}; {left:.0f} s left"
    if prev.probe_from_ms is not None and c.now_ms < prev.probe_from_ms:
        rest = (prev.probe_from_ms - c.now_ms) / 1000
        return _Step(window, replace(prev, state="ejected", weight=0), 0, f"{reason}; no probe calls for {rest:.0f} s")
    return _Step(window, replace(prev, state="ejected"), 0, reason, dead=True)


def _remembered_ejections(prev: InstanceState, c: _Cycle) -> int:
    """Past ejections, one forgotten per ejection_forgive_s since the last one ended."""
    if prev.ejected_until_ms is None or c.config.ejection_forgive_s <= 0:
        return prev.ejections
    forgiven = int(max(0, c.now_ms - prev.ejected_until_ms) / 1000 // c.config.ejection_forgive_s)
    return max(0, prev.ejections - forgiven)


def _apply_probe_share(steps: list[_Step], config: EngineConfig) -> list[_Step]:
    """Dead instances (ejected, or cut to 0) get probe traffic: what `probe_calls` per window takes at
    the fleet's current call rate, at most probe_share of the live weight in all (MSEC), >= 1 each.

    Without the probe they would get no calls, so there would be no data to see them recover; with
    more than they need, a busy fleet sends every 100th call to an instance known to be bad, which
    lands right on the callers' p99.
    """
    dead = [s for s in steps if s.dead]
    if not dead:
        return steps
    live = sum(s.weight for s in steps if not s.dead)
    fleet_calls = sum(evidence_calls(s.window) for s in steps)
    cap = config.probe_share / len(dead)
    needed = config.probe_calls / max(fleet_calls, 1)
    # Rounded to what recovery needs, but never up past the cap: "at most 1%" must hold on the wire.
    probe = max(1, min(round(min(cap, needed) * live), math.floor(cap * live)))
    if needed <= cap:
        why = f"~{config.probe_calls} calls per {config.window_s} s window at the fleet's {fleet_calls}"
    else:
        why = f"capped at {config.probe_share:.0%} of the live weight {live}" + (
            f" shared by {len(dead)}" if len(dead) > 1 else "")
    note = f"probe share: weight {probe} ({why})"
    return [replace(s, weight=probe, state=replace(s.state, weight=probe), reason=f"{s.reason}; {note}")
            if s.dead else s for s in steps]


def _result(step: _Step, window_s: int) -> InstanceResult:
    w = step.window
    if judged_by(w) == "tcp":
        tcp = w.tcp
        connected = tcp is not None and tcp.attempts > tcp.failures
        return InstanceResult(
            instance=w.instance, weight=step.weight, state=step.state.state, reason=step.reason,
            success_rate=tcp.success_rate if tcp else None,
            latency_ms_p50=tcp.connect_ms_p50 if tcp and connected else None,
            latency_ms_p99=tcp.connect_ms_p99 if tcp and connected else None,
            rps=tcp.attempts / window_s if tcp else 0.0, version=w.version, signal="tcp",
        )
    has_calls = w.requests > 0
    return InstanceResult(
        instance=w.instance,
        weight=step.weight,
        state=step.state.state,
        reason=step.reason,
        success_rate=w.success_rate,
        latency_ms_p50=w.latency_ms_p50 if has_calls else None,
        latency_ms_p99=w.latency_ms_p99 if has_calls else None,
        rps=w.rps,
        version=w.version,
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
