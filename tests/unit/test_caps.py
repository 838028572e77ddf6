"""Cardinality caps (weights/caps.py) and their metrics and log lines (core/caps_report.py)."""

from __future__ import annotations

import logging

import pytest

from core.caps_report import REFUSED, CapReporter
from weights.caps import HOUR_MS, Caps, Ledger, Observation, track

CAPS = Caps(services_per_hour=3, instances_per_service=2, interfaces_per_service=2)
FORGET = 300_000


def obs(service: str, instance: str = "10.0.0.1:80", at: int = 0, interfaces: tuple[str, ...] = ()) -> Observation:
    return Observation(service, instance, at, interfaces)


def test_new_services_past_the_hourly_cap_are_refused_until_the_hour_moves_on() -> None:
    step = track(Ledger(), [obs(f"s{n}", at=n) for n in range(5)], 10, CAPS, FORGET)
    assert set(step.ledger.services) == {"s0", "s1", "s2"}
    assert step.refused.counts["services_per_hour"] == 2 and step.refused.examples["services_per_hour"] == ("s3", "s4")
    assert {s for s, _ in step.accepted} == {"s0", "s1", "s2"}
    # s0..s2 are still tracked (forget_ms is longer here); an hour after their creation there is room again.
    later = HOUR_MS + 20
    again = track(step.ledger, [obs(f"s{n}", at=later) for n in range(5)], later, CAPS, 2 * HOUR_MS)
    assert set(again.ledger.services) == {"s0", "s1", "s2", "s3", "s4"} and not again.refused


def test_operator_made_services_and_instances_are_never_refused() -> None:
    full = track(Ledger(), [obs(f"s{n}") for n in range(3)], 0, CAPS, FORGET).ledger
    step = track(full, [obs("registered", f"10.0.0.{n}:80") for n in range(5)], 1, CAPS, FORGET,
                 exempt_services={"registered"}, registered={("registered", "10.0.0.4:80")})
    assert step.refused.counts["services_per_hour"] == 0
    assert ("registered", "10.0.0.4:80") in step.accepted, "a registered instance is accepted past the cap"
    assert len(step.ledger.instances["registered"]) == 2 and step.refused.counts["instances_per_service"] == 2


def test_instances_and_interfaces_per_service_are_bounded() -> None:
    rows = [obs("s", f"10.0.0.{n}:80", at=n, interfaces=(f"GET /{n}", "GET /")) for n in range(4)]
    step = track(Ledger(), rows, 10, CAPS, FORGET)
    assert sorted(step.ledger.instances["s"]) == ["10.0.0.0:80", "10.0.0.1:80"]
    assert step.refused.counts["instances_per_service"] == 2
    assert sorted(step.ledger.interfaces["s"]) == ["GET /", "GET /0"]
    assert step.refused.counts["interfaces_per_service"] == 3


def test_stale_entities_expire_and_free_their_room() -> None:
    first = track(Ledger(), [obs("s", "10.0.0.1:80", at=0), obs("s", "10.0.0.2:80", at=0)], 0, CAPS, FORGET)
    later = FORGET + 1
    step = track(first.ledger, [obs("s", "10.0.0.3:80", at=later)], later, CAPS, FORGET)
    assert list(step.ledger.instances["s"]) == ["10.0.0.3:80"] and not step.refused
    assert step.ledger.sizes() == {"services": 1, "instances": 1, "interfaces": 0}


def test_a_flood_leaves_the_ledger_at_the_caps() -> None:
    flood = [obs(f"one-off-{n}", at=n) for n in range(50_000)]
    step = track(Ledger(), flood, 50_000, Caps(), FORGET)
    assert step.ledger.sizes()["services"] == Caps().services_per_hour
    assert step.refused.counts["services_per_hour"] == 50_000 - Caps().services_per_hour


def test_each_refusing_cap_has_a_metric_and_a_rate_limited_log_line(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = CapReporter(CAPS, log_every_s=60, clock=lambda: now[0])
    step = track(Ledger(), [obs(f"s{n}") for n in range(5)], 0, CAPS, FORGET)
    with caplog.at_level(logging.WARNING, logger="svcpulse.caps"):
        reporter.report(step)
        assert REFUSED.labels("services_per_hour")._value.get() == 2
        reporter.report(step, services_refused=40_000)  # the loop's scan counted every one over the cap
        assert REFUSED.labels("services_per_hour")._value.get() == 40_000
        reporter.report(track(Ledger(), [], 0, CAPS, FORGET), services_refused=0)
        assert REFUSED.labels("services_per_hour")._value.get() == 0
        now[0] = 61
        reporter.report(step)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, "at most one line a minute per cap"
    assert lines[0] == ("cap services_per_hour=3 reached (new services in the last hour): 2 refused, e.g. 's3', "
                        "'s4'; their events are stored, no entity is created")
