"""The streaming control loop's pure parts: the latency sketch, the per-second windows, the cycle over
many services, the control tables merged by changed_ms, feed messages, and the input-staleness rule."""

from __future__ import annotations

import random

import pytest

from weigh.ownership import stalled
from weights import control, message
from weights.cycle import run_cycle
from weights.model import DEFAULT_CONFIG, EngineState
from weights.sketch import DDSketch, merged
from weights.window import Windows

NOW = 1_800_000_000_000


def call(service: str, instance: str, ts_ms: int, ok: bool = True, latency: float = 5.0,
         side: str = "server", version: str = "v1") -> dict:
    return {"callee": service, "instance": instance, "side": side, "ts_ms": ts_ms, "version": version,
            "status": "ok" if ok else "error", "latency_ms": latency}


def test_the_sketch_answers_quantiles_within_its_relative_accuracy_and_merges_exactly() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(3, 1) for _ in range(20_000)]
    parts = [DDSketch() for _ in range(10)]
    for n, v in enumerate(values):
        parts[n % 10].add(v)
    whole = merged(parts)
    ordered = sorted(values)
    for q, got in zip((0.5, 0.9, 0.99), whole.quantiles((0.5, 0.9, 0.99)), strict=True):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(got - exact) / exact <= 0.011, (q, got, exact)
    assert whole.count == 20_000 and DDSketch().quantiles((0.5,)) == [0.0]
    tiny = DDSketch()
    tiny.add(0.0)
    assert tiny.quantiles((0.99,)) == [0.0]
    with pytest.raises(ValueError, match="different relative accuracy"):
        DDSketch(0.01).merge(DDSketch(0.02))


def test_windows_count_the_last_window_s_and_remember_who_called_within_forget_s() -> None:
    windows = Windows(window_s=10, forget_s=300)
    for n in range(100):
        windows.add(call("s", "a:1", NOW - 5_000 + n, ok=n % 10 != 0, latency=10.0), NOW)
    windows.add(call("s", "old:1", NOW - 60_000, version="v0"), NOW)  # seen, but outside the window
    windows.add(call("s", "a:1", NOW + 3_600_000), NOW)  # an hour ahead: no bucket, not counted
    windows.add(call("", "a:1", NOW), NOW)  # no callee: ignored
    rows = {r["instance"]: r for r in windows.rows(NOW, ["s"])}
    assert rows["a:1"]["requests"] == 100 and rows["a:1"]["errors"] == 10
    assert rows["a:1"]["p50"] == pytest.approx(10.0, rel=0.01) and rows["a:1"]["last_ms"] == NOW - 5_000 + 99
    assert rows["old:1"]["requests"] == 0 and rows["old:1"]["version"] == "v0"
    later = NOW + 20_000
    windows.expire(later)
    assert windows.rows(later, ["s"])[0]["requests"] == 0  # the buckets left the window
    windows.expire(NOW + 400_000)
    assert windows.rows(NOW + 400_000, ["s"]) == [] and not windows.services  # forgotten after forget_s


def test_seeded_membership_survives_a_take_over_without_buckets() -> None:
    windows = Windows(window_s=10, forget_s=300)
    windows.seed("s", [("a:1", "server", NOW - 100_000, "v2")])
    assert windows.seen("s") == [("a:1", "server", NOW - 100_000, "v2")]
    assert windows.rows(NOW, ["s"])[0]["requests"] == 0


def registered(service: str, *instances: str) -> list[dict]:
    return [{"service": service, "instance": i, "static_weight": 100, "version": "", "enabled": 1, "source": "api",
             "deleted": 0, "changed_ms": NOW - 10} for i in instances]


def test_the_cycle_steps_owned_registered_services_and_aborts_a_worse_canary() -> None:
    windows = Windows(10, 300)
    for n in range(200):
        for instance in ("a:1", "b:1", "evil:1"):
            windows.add(call("shop", instance, NOW - n * 10), NOW)
        windows.add(call("shop", "c:1", NOW - n * 10, ok=n % 2 == 0, version="v2"), NOW)
        windows.add(call("other", "x:1", NOW - n * 10), NOW)
    view = control.ControlView()
    view.apply("registry_instances", registered("shop", "a:1", "b:1", "c:1") + registered("other", "x:1"))
    view.apply("releases", [{"service": "shop", "canary_version": "v2", "percent": 10.0, "state": "active",
                             "reason": "try", "error_margin": 0.02, "p99_margin": 0.5, "changed_ms": NOW - 1,
                             "changed_by": "olga"}])
    result = run_cycle(windows.rows(NOW, ["shop", "other"]), view, {}, NOW, DEFAULT_CONFIG, 50,
                       owns=lambda s: s == "shop")
    assert set(result.feeds) == {"shop"} and set(result.states) == {"shop"}
    assert {i["instance"] for i in result.feeds["shop"]["instances"]} == {"a:1", "b:1", "c:1"}, "evil:1 is only seen"
    assert result.aborts[0]["state"] == "aborted" and result.aborts[0]["changed_ms"] == NOW
    assert result.feeds["shop"]["release"]["state"] == "aborted"
    weights = {i["instance"]: i["weight"] for i in result.feeds["shop"]["instances"]}
    assert weights["c:1"] < 10 <= weights["a:1"]


def test_control_rows_merge_by_changed_ms_whatever_the_order_and_intents_are_not_rows() -> None:
    view = control.ControlView()
    newer = {"service": "s", "instance": "a:1", "drained": 1, "pinned_weight": -1, "deleted": 0,
             "changed_ms": 20, "changed_by": "o", "why": "w"}
    older = {**newer, "drained": 0, "pinned_weight": 5, "changed_ms": 10}
    assert view.apply("weight_overrides", [newer]) and not view.apply("weight_overrides", [older])
    assert view.overrides()["s"]["a:1"].drained
    assert view.apply("weight_overrides", [{**newer, "deleted": 1, "changed_ms": 30}])
    assert view.overrides() == {}
    key, value = control.encode_row("user_roles", {"user": "ada", "role": "viewer", "changed_ms": 1,
                                                   "changed_by": "x"})
    assert key == b"user_roles/ada" and control.decode(value)["row"]["role"] == "viewer"
    key, value = control.encode_intent("release.abort", "s/5", {"release": {}})
    assert key == b"intent/release.abort/s/5" and control.decode(value)["intent"] == "release.abort"
    for bad in (b'{"table": "nope", "row": {}}', b'{"intent": "drop tables"}', b'{"intent": "discovered"}', b"[]"):
        with pytest.raises(ValueError, match="neither a table row nor a known intent"):
            control.decode(bad)


def test_a_feed_message_round_trips_with_engine_memory_and_tombstones() -> None:
    windows = Windows(10, 300)
    for n in range(50):
        windows.add(call("s", "a:1", NOW - n), NOW)
    view = control.ControlView()
    view.apply("registry_instances", registered("s", "a:1"))
    result = run_cycle(windows.rows(NOW, ["s"]), view, {}, NOW, DEFAULT_CONFIG, 50)
    state = result.states["s"]
    raw = message.encode(result.feeds["s"], state, "host:1", windows.seen("s"))
    back = message.decode(b"s", raw)
    assert back.feed == result.feeds["s"] and back.state == state and back.worker == "host:1"
    assert back.seen == (("a:1", "server", NOW, "v1"),)
    assert message.decode(b"s", None).feed is None and message.decode(b"s", None).state == EngineState()
    with pytest.raises(ValueError, match="names 's'"):
        message.decode(b"other", raw)
    with pytest.raises(ValueError, match="without a key"):
        message.decode(None, raw)


def test_a_partition_is_stalled_only_when_events_wait_and_none_was_read_for_too_long() -> None:
    assert stalled("svcpulse.rpc[2]", 120, 7.0, 6.0) == \
        "inputs stopped advancing: 120 events waiting on svcpulse.rpc[2], none read for 7 s"
    assert stalled("p", 0, 60.0, 6.0) == "" and stalled("p", None, 60.0, 6.0) == ""  # quiet, not stuck
    assert stalled("p", -99, 60.0, 6.0) == "", "a whole batch read: Tansu's watermark is below the position"
    assert stalled("p", 120, 5.0, 6.0) == ""
