"""The service map's pure parts (api/servicemap/): verdicts and colours, feed states, the bound on
edges, endpoint names, and that the same rows always give the same map."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest

from api.queries.map import segments
from api.servicemap import Inputs, build_map
from api.servicemap.edges import OTHERS, bounded, canonical, finish
from api.servicemap.health import COLORS, feed_state, judge
from api.timerange import Window


def test_verdicts_need_enough_samples_and_say_why() -> None:
    assert judge({}).health == "idle"
    assert judge({"calls": 19, "failures": 19}).health == "healthy"  # too few calls to judge a rate
    assert judge({"calls": 1000, "failures": 5}).health == "warning"
    bad = judge({"calls": 1000, "failures": 20, "latency_ms_p99": 1500.0})
    assert bad.health == "critical" and bad.color == COLORS["critical"]
    assert bad.why == ("calls: 98.0% succeed (20 of 1000 failed)", "p99 1500 ms")
    # A balancer steering around a sick instance hides it in the total: the edge still turns red.
    hidden = judge({"calls": 10_000, "failures": 3, "worst_instance": {"instance": "10.0.0.3:80", "calls": 60,
                                                                     "failures": 3}})
    assert hidden.health == "critical" and "10.0.0.3:80 fails 5.0%" in hidden.why[0]
    assert judge({"tcp_attempts": 100, "tcp_failed": 0, "tcp_retransmits": 12}).health == "warning"
    assert judge({"tcp_attempts": 100, "tcp_failed": 2}).health == "critical"


def test_a_service_state_is_its_feeds() -> None:
    assert feed_state(None)[0] == "unknown"
    ok = {"instance": "a", "state": "healthy", "weight": 100}
    assert feed_state({"instances": [ok, {**ok, "instance": "b"}]})[0] == "healthy"
    state, why, counts = feed_state({"instances": [ok, {"instance": "b", "state": "ejected", "weight": 0,
                                                        "reason": "errors 40%"}]})
    assert (state, counts) == ("degraded", {"healthy": 1, "ejected": 1}) and "b ejected: errors 40%" in why
    assert feed_state({"mode": "protective", "instances": [ok]})[0] == "degraded"
    assert feed_state({"instances": [{**ok, "state": "drained", "weight": 0}]})[0] == "down"


def edge(source: str, target: str, calls: int, failures: int = 0) -> dict[str, Any]:
    return finish({"id": f"{source}->{target}", "source": source, "target": target, "calls": calls,
                   "failures": failures, "latency_ms_p50": None, "latency_ms_p99": 10.0, "measured_by": "client",
                   "worst_instance": None, "tcp_attempts": 0, "tcp_failed": 0, "tcp_retransmits": 0,
                   "tcp_resets": 0}, 60.0)


def test_the_bound_keeps_unhealthy_then_busiest_edges_and_groups_the_rest_per_target() -> None:
    edges = [edge("svc:a", "svc:x", 6000), edge("svc:b", "svc:x", 600), edge("svc:c", "svc:x", 60),
             edge("svc:d", "svc:y", 100, failures=50), edge("svc:e", "svc:z", 30)]
    kept, omitted = bounded(edges, 2, 60.0)
    one_by_one = {(e["source"], e["target"]) for e in kept if e["source"] != OTHERS}
    assert one_by_one == {("svc:d", "svc:y"), ("svc:a", "svc:x")}  # the failing edge first, then the busiest
    [group] = [e for e in kept if e["source"] == OTHERS]
    assert (group["target"], group["grouped_edges"], group["calls"]) == ("svc:x", 2, 660)
    assert omitted == {"edges": 1, "rps": 0.5, "tcp_rate": 0.0}  # svc:z is not on the map


@pytest.mark.parametrize(("instance", "spelled"), [
    ("10.0.0.1:8080", "10.0.0.1:8080"), ("[fd00:0::0001]:80", "[fd00::1]:80"), ("fd00::1:80", "[fd00::1]:80"),
    ("db.internal:5432", "db.internal:5432"), ("256.1.1.1:80", "256.1.1.1:80")])
def test_instances_are_named_as_the_collector_names_endpoints(instance: str, spelled: str) -> None:
    assert canonical(instance) == spelled


def test_the_same_rows_in_any_order_give_the_same_map() -> None:
    pairs = [{"caller": f"s{i}", "callee": f"s{(i + 1) % 7}", "side": side, "calls": 100 + i, "errors": i,
              "timeouts": 0, "p50": 1.0, "p99": 9.0} for i in range(7) for side in ("client", "server")]
    callees = [{**p, "caller": ""} for p in pairs]
    tcp = [{"cgroup": f"/system.slice/s{i}.service", "raddr": "10.9.0.1", "rport": 5432, "attempts": 40, "ok": 39,
            "retransmits": 1, "resets": 0} for i in range(7)]
    workloads = [{"cgroup": f"/system.slice/s{i}.service", "workload": f"s{i}.service", "workload_kind": "unit",
                  "service": f"s{i}", "source": "rpc", "events": 10} for i in range(7)]

    def shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        rows = [dict(r) for r in rows]
        random.Random(seed).shuffle(rows)
        return rows

    maps = [build_map(Inputs(seconds=60.0, pairs=shuffled(pairs, seed), callees=shuffled(callees, seed),
                             instances=[], tcp=shuffled(tcp, seed), workloads=shuffled(workloads, seed)), 5)
            for seed in (1, 2, 3)]
    assert maps[0] == maps[1] == maps[2]
    assert len([e for e in maps[0]["edges"] if e["source"] != OTHERS]) == 5


@pytest.mark.parametrize(("from_s", "to_s"), [(0, 3600), (60, 3660), (120, 600), (3060, 24780), (300, 540),
                                              (86_340, 86_400 * 8 + 60)])
def test_the_rollup_tiers_cover_a_range_exactly_once(from_s: int, to_s: int) -> None:
    parts = segments(Window(from_s, to_s, 60))
    assert parts[0][1] == from_s and parts[-1][2] == to_s
    assert all(a[2] == b[1] for a, b in pairwise(parts))  # contiguous, no overlap
    sizes = {"1m": 60, "10m": 600, "1h": 3600}
    assert all(lo % sizes[tier] == 0 and hi % sizes[tier] == 0 for tier, lo, hi in parts)
    assert sum(tier == "1m" for tier, _, _ in parts) <= 2  # minutes only at the edges


def test_a_range_ending_now_reads_its_current_hour_whole_and_a_past_range_stays_exact() -> None:
    # The last hour at 20:34 (to = 20:35, the current minute's end): minutes up to 19:40, ten minutes
    # up to 20:00, then the current hour as one bucket instead of 20:00-20:30 and five more minutes.
    window = Window(19 * 3600 + 34 * 60, 20 * 3600 + 35 * 60, 60)
    assert segments(window, now_s=20 * 3600 + 34 * 60 + 30) == [
        ("1m", 19 * 3600 + 34 * 60, 19 * 3600 + 40 * 60), ("10m", 19 * 3600 + 40 * 60, 20 * 3600),
        ("1h", 20 * 3600, 21 * 3600)]
    # Ended before now: calls stamped after its end are real, so it stops at its last minute.
    assert segments(window, now_s=20 * 3600 + 36 * 60)[-1] == ("1m", 20 * 3600 + 30 * 60, 20 * 3600 + 35 * 60)
    assert segments(window) == segments(window, now_s=20 * 3600 + 36 * 60)
