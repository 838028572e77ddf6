"""Trust in the weigh worker's cycle: admission (weights/admission.py) and caps (weights/caps.py) applied
by weights/cycle.py to the stream's windows, and the worker's per-event gate (weigh/gate.py)."""

from __future__ import annotations

from weigh.gate import Gate
from weights import control
from weights.caps import Caps, Ledger
from weights.cycle import Bounds, CycleResult, run_cycle
from weights.model import DEFAULT_CONFIG
from weights.window import Windows

NOW = 1_800_000_000_000
FORGET_MS = 60_000


def call(service: str, instance: str, ts_ms: int, side: str = "server", interface: str = "GET /x") -> dict:
    return {"callee": service, "instance": instance, "side": side, "ts_ms": ts_ms, "version": "v1",
            "status": "ok", "latency_ms": 5.0, "interface": interface}


def view_with(policy_cidrs: list[str] | None = None, registered: tuple[str, ...] = ()) -> control.ControlView:
    view = control.ControlView()
    view.apply("registry_instances", [{"service": "shop", "instance": i, "static_weight": 100, "version": "",
                                       "enabled": 1, "source": "api", "deleted": 0, "changed_ms": 1}
                                      for i in registered])
    if policy_cidrs is not None:
        view.apply("discovery_policies", [{"service": "shop", "cidrs": policy_cidrs, "ports": [8080],
                                           "server_side_only": 1, "deleted": 0, "changed_ms": 1}])
    return view


def cycle(windows: Windows, view: control.ControlView, now_ms: int = NOW, caps: Caps | None = None) -> CycleResult:
    services = list(windows.services)
    return run_cycle(windows.rows(now_ms, services), view, {}, now_ms, DEFAULT_CONFIG, 50,
                     bounds=Bounds(caps or Caps(), FORGET_MS), interfaces=windows.served(services))


def test_only_registered_and_policy_admitted_instances_reach_the_feed_and_admitted_ones_expire() -> None:
    windows = Windows(10, FORGET_MS // 1000)
    for n in range(30):
        windows.add(call("shop", "10.0.0.1:8080", NOW - n * 100), NOW)  # registered
        windows.add(call("shop", "10.0.0.2:8080", NOW - n * 100), NOW)  # admitted by the policy
        windows.add(call("shop", "203.0.113.66:443", NOW - n * 100), NOW)  # the hijack: outside the policy
        windows.add(call("shop", "10.0.0.3:8080", NOW - n * 100, side="client"), NOW)  # only clients claim it
        windows.add(call("evil", "10.0.0.9:8080", NOW - n * 100), NOW)  # nobody made this service
    result = cycle(windows, view_with(["10.0.0.0/24"], ("10.0.0.1:8080",)))
    assert set(result.feeds) == {"shop"}, "an unmade service has no feed"
    assert {i["instance"] for i in result.feeds["shop"]["instances"]} == {"10.0.0.1:8080", "10.0.0.2:8080"}
    without_policy = cycle(windows, view_with(None, ("10.0.0.1:8080",))).feeds["shop"]["instances"]
    assert [i["instance"] for i in without_policy] == ["10.0.0.1:8080"]
    later = NOW + FORGET_MS + 1000  # nothing called in since: the admitted one expires, the registered one stays
    windows.expire(later)
    result = cycle(windows, view_with(["10.0.0.0/24"], ("10.0.0.1:8080",)), now_ms=later)
    assert [i["instance"] for i in result.feeds["shop"]["instances"]] == ["10.0.0.1:8080"]


def test_caps_bound_instances_and_interfaces_a_policy_lets_telemetry_create() -> None:
    windows = Windows(10, FORGET_MS // 1000, max_interfaces=3)
    for n in range(10):
        windows.add(call("shop", f"10.0.0.{n + 1}:8080", NOW - 1000 + n, interface=f"GET /{n}"), NOW)
    result = cycle(windows, view_with(["10.0.0.0/24"], ("10.0.0.9:8080",)),
                   caps=Caps(services_per_hour=1, instances_per_service=2, interfaces_per_service=2))
    routable = {i["instance"] for i in result.feeds["shop"]["instances"]}
    assert routable == {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.9:8080"}, "the first two, and the registered one"
    assert result.tracked.refused.counts["instances_per_service"] == 7
    assert result.tracked.refused.counts["interfaces_per_service"] == 1, "3 kept by the window, 2 by the cap"
    assert result.tracked.ledger.sizes() == {"services": 1, "instances": 2, "interfaces": 2}


def test_the_gate_refuses_new_services_past_the_hourly_room_once_the_control_tables_are_known() -> None:
    caps = Caps(services_per_hour=2, instances_per_service=1)
    windows, gate = Windows(10, 60), Gate(caps, FORGET_MS)
    assert gate.passes(windows, "early", "a:1", "server", NOW), "nothing is refused before the tables are known"
    made = view_with(["10.0.0.0/8"]).authority()
    gate.arm(made, Ledger(), NOW)
    passed = [s for s in ("s1", "s2", "s3", "s4") if gate.passes(windows, s, "a:1", "server", NOW)]
    assert passed == ["s1", "s2"] and set(gate.refused) == {"s3", "s4"}
    assert gate.passes(windows, "shop", "a:1", "server", NOW), "an operator-made service is never refused"
    windows.add(call("shop", "a:1", NOW), NOW)
    windows.add(call("shop", "a:1", NOW, side="client"), NOW)
    assert not gate.passes(windows, "shop", "b:1", "server", NOW), "two sides of instances_per_service held"
    assert gate.passes(windows, "shop", "a:1", "server", NOW)
    gate.arm(made, Ledger(), NOW + FORGET_MS + 1)
    assert gate.refused == {}, "refused names are forgotten after forget_s"
