"""Callers' connections in memory for the weigh worker (weights/tcp_window.py) and the pure cycle judging them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import tcp_event
from weights import control
from weights.cycle import run_cycle, wanted_ports
from weights.model import DEFAULT_CONFIG
from weights.tcp import TcpWindow
from weights.tcp_window import TcpWindows

NOW = 1_764_000_100_000


def conn(raddr: str, outcome: str = "ok", ago_ms: int = 1000, **changes: Any) -> dict[str, Any]:
    ok = outcome == "ok"
    return tcp_event(0, **{"ts_ms": NOW - ago_ms, "role": "client", "raddr": raddr, "rport": 8080, "outcome": outcome,
                           "connect_ms": 0.5 if ok else 0.0, "srtt_us": 400 if ok else 0, "retransmits": 0,
                           **changes})


def test_counts_client_connections_to_wanted_ports_over_the_window() -> None:
    windows = TcpWindows(window_s=10)
    windows.want({8080})
    taken = [windows.add(conn("10.0.0.1"), NOW) for _ in range(8)]
    taken += [windows.add(conn("10.0.0.1", "refused"), NOW), windows.add(conn("10.0.0.1", "reset", retransmits=3), NOW),
              windows.add(conn("fd00::1", "aborted"), NOW)]
    skipped = [windows.add(conn("10.0.0.1", role="server"), NOW), windows.add(conn("10.0.0.1", outcome=""), NOW),
               windows.add(conn("10.0.0.1", rport=9090), NOW), windows.add(conn("10.0.0.1", ago_ms=30_000), NOW)]
    assert all(taken) and not any(skipped)
    found = windows.windows(NOW)
    one = found["10.0.0.1:8080"]
    assert (one.attempts, one.refused, one.resets, one.retransmits, one.failures) == (10, 1, 1, 3, 2)
    assert one.connect_ms_p50 == pytest.approx(0.5, rel=0.02) and one.srtt_ms_p99 == pytest.approx(0.4, rel=0.02)
    assert found["[fd00::1]:8080"] == TcpWindow(attempts=1, aborted=1)


def test_buckets_leave_with_the_window_and_memory_stays_bounded() -> None:
    windows = TcpWindows(window_s=10, max_endpoints=2)
    windows.want({8080})
    for n in range(3):
        windows.add(conn(f"10.0.0.{n}"), NOW)
    assert set(windows.windows(NOW)) == {"10.0.0.0:8080", "10.0.0.1:8080"} and windows.dropped == 1
    later = NOW + 15_000
    windows.expire(later)
    assert windows.endpoints == {} and windows.windows(later) == {}
    windows.add(conn("10.0.0.5"), NOW)
    windows.want({9090})  # the service moved: what was counted for 8080 goes
    assert windows.endpoints == {}


def test_the_cycle_judges_a_tcp_service_from_the_streamed_connections() -> None:
    view = control.ControlView()
    view.apply("registry_services", [{"service": "legacy", "kind": "ip", "description": "", "signal": "tcp",
                                      "source": "api", "deleted": 0, "changed_ms": 1, "changed_by": "t"}])
    view.apply("registry_instances", [{"service": "legacy", "instance": f"10.0.0.{n}:8080", "static_weight": 100,
                                       "version": "", "enabled": 1, "source": "api", "deleted": 0, "changed_ms": 1,
                                       "changed_by": "t"} for n in (1, 2)])
    assert wanted_ports(view) == {8080}
    windows = TcpWindows(window_s=10)
    windows.want(wanted_ports(view))
    for _ in range(60):
        windows.add(conn("10.0.0.1"), NOW)
        windows.add(conn("10.0.0.2", "refused"), NOW)
    result = run_cycle([], view, {}, NOW, DEFAULT_CONFIG, 50, tcp=windows.windows(NOW))
    rows = {r["instance"]: r for r in result.feeds["legacy"]["instances"]}
    assert rows["10.0.0.1:8080"]["weight"] == 100 and rows["10.0.0.1:8080"]["signal"] == "tcp"
    assert rows["10.0.0.2:8080"]["state"] == "ejected"
    assert rows["10.0.0.2:8080"]["reason"].startswith("from TCP: 0.0% of 60 connections ok < floor 80.0% (60 refused)")
