"""The service map's pure parts (api/servicemap/): verdicts and colours, feed states, the bound on
edges, endpoint names, that the same rows always give the same map, and that latencies are asked for
the drawn edges and nodes only."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest

from api.queries.map import latency_window, segments
from api.servicemap import CalleeKey, Inputs, PairKey, Quantiles, build_map
from api.servicemap.edges import OTHERS, bounded, canonical, finish
from api.servicemap.health import COLORS, feed_state, judge
from api.timerange import Window


def test_verdicts_need_enough_samples_and_say_why() -> None:
    assert judge({}).health == "idle"
    assert judge({"calls": 19, "failures": 19}).health == "healthy"  # too few calls to judge a rate
    assert judge({"calls": 1000, "failures": 5}).health == "warning"
    bad = judge({"calls": 1000, "failures": 20, "slow_calls": 15})
    assert bad.health == "critical" and bad.color == COLORS["critical"]
    assert bad.why == ("calls: 98.0% succeed (20 of 1000 failed)",
                       "p99 over 1 s: 1.5% of calls took longer (15 of 1000)")
    assert judge({"calls": 1000, "slow_calls": 10}).health == "healthy"  # 1% over a second: p99 is not over it
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
                   "failures": failures, "slow_calls": 0, "latency_ms_p50": None, "latency_ms_p99": 10.0,
                   "measured_by": "client",
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


def quantiles(pairs: set[PairKey], callees: set[CalleeKey]) -> tuple[dict[PairKey, Quantiles],
                                                                     dict[CalleeKey, Quantiles]]:
    """A stand-in for api.queries.map.latencies: p50 1 ms and p99 a figure of the key's length."""
    return ({key: (1.0, float(len("".join(key)))) for key in pairs},
            {key: (1.0, float(len("".join(key)))) for key in callees})


def test_the_same_rows_in_any_order_give_the_same_map() -> None:
    pairs = [{"caller": f"s{i}", "callee": f"s{(i + 1) % 7}", "side": side, "calls": 100 + i, "errors": i,
              "timeouts": 0, "slow": 0} for i in range(7) for side in ("client", "server")]
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
                             instances=[], tcp=shuffled(tcp, seed), workloads=shuffled(workloads, seed)), 5,
                       quantiles)
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


def pair(caller: str, callee: str, calls: int, side: str = "client", failed: int = 0, slow: int = 0) -> dict[str, Any]:
    return {"caller": caller, "callee": callee, "side": side, "calls": calls, "errors": failed, "timeouts": 0,
            "slow": slow}


def test_latencies_are_merged_only_for_the_edges_and_service_nodes_drawn() -> None:
    # 12 callers call 3 services 10 calls/s and more each; one quiet pair is slow (p99 over a second).
    pairs = [pair(f"c{i}", f"s{j}", 600 + 60 * i + j, side="server" if j == 2 else "client")
             for i in range(12) for j in range(3)] + [pair("c0", "s3", 100, slow=2)]
    callees = [pair("", f"s{j}", 1000, side=side) for j in range(4) for side in ("client", "server")]
    asked: list[tuple[set[PairKey], set[CalleeKey]]] = []

    def recorded(pairs: set[PairKey], callees: set[CalleeKey]) -> tuple[dict[PairKey, Quantiles],
                                                                        dict[CalleeKey, Quantiles]]:
        asked.append((set(pairs), set(callees)))
        return quantiles(pairs, callees)

    graph = build_map(Inputs(seconds=60.0, pairs=pairs, callees=callees, instances=[], tcp=[], workloads=[]), 4,
                      recorded)
    drawn = [e for e in graph["edges"] if e["source"] != OTHERS]
    # Chosen from counts alone: the slow pair first (critical without its digest), then the busiest.
    assert [(e["source"], e["target"]) for e in drawn] == [("svc:c0", "svc:s3"), ("svc:c11", "svc:s0"),
                                                           ("svc:c11", "svc:s1"), ("svc:c11", "svc:s2")]
    [(pairs_asked, callees_asked)] = asked  # one question, for what is drawn
    assert pairs_asked == {("c0", "s3", "client"), ("c11", "s0", "client"), ("c11", "s1", "client"),
                           ("c11", "s2", "server")}
    # Service nodes: callers c0 and c11 served no calls; s0-s3 on their own (server) side.
    assert callees_asked == {(f"s{j}", "server") for j in range(4)}
    slow = next(e for e in drawn if e["target"] == "svc:s3")
    assert slow["health"] == "critical" and slow["latency_ms_p99"] == len("c0s3client")
    assert {n["id"]: n["latency_ms_p99"] for n in graph["nodes"]}["svc:s2"] == len("s2server")
    # The rest is grouped per drawn target with every count and no latency (their digests were not read).
    groups = {e["target"]: e for e in graph["edges"] if e["source"] == OTHERS}
    assert set(groups) == {"svc:s0", "svc:s1", "svc:s2"}
    assert groups["svc:s1"]["grouped_edges"] == 11
    assert groups["svc:s1"]["calls"] == sum(600 + 60 * i + 1 for i in range(11))
    assert groups["svc:s1"]["latency_ms_p50"] is None and groups["svc:s1"]["latency_ms_p99"] is None
    assert graph["omitted"]["edges"] == 0


def test_latency_quantiles_cover_whole_ten_minutes_only_when_that_widens_the_range_a_little() -> None:
    hour = Window(19 * 3600 + 34 * 60, 20 * 3600 + 34 * 60, 60)  # 19:34-20:34, ending now (20:33:30)
    assert latency_window(hour, now_s=20 * 3600 + 33 * 60 + 30) == Window(19 * 3600 + 30 * 60, hour.to_s, 60)
    # Ended in the past: both ends to whole ten minutes (19:30-20:40: 10 minutes more, 17%) is too much.
    assert latency_window(hour) == hour
    assert latency_window(Window(0, 4 * 3600 + 60, 60)) == Window(0, 4 * 3600 + 600, 60)  # 9 of 241 minutes
    quarter = Window(20 * 3600 + 19 * 60, 20 * 3600 + 34 * 60, 60)  # 15 minutes: 9 more would be 60%
    assert latency_window(quarter, now_s=20 * 3600 + 33 * 60) == quarter
