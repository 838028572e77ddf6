"""Envoy: least_request with power of two choices, plus outlier detection (envoy_outlier.py).

LeastRequestLoadBalancer::unweightedHostPickNChoices (source/extensions/load_balancing_policies/
least_request/least_request_lb.cc): draw `choice_count` hosts uniformly WITH replacement from the
healthy (not ejected) hosts; a later draw replaces the candidate only with strictly fewer active
requests. choice_count defaults to 2 (least_request.proto: "Defaults to 2 so that we perform
two-choice selection if the field is not set"). All hosts have the same weight here, so the
unweighted path is the one Envoy takes. Ejection never goes near the 50% panic threshold
(max_ejection_percent is 10), so the panic mode is not modelled.
"""

from __future__ import annotations

from collections import Counter

from bench.policies.base import Context, Result
from bench.policies.envoy_outlier import OutlierConfig, OutlierDetector

CHOICE_COUNT = 2  # envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest.choice_count default


class EnvoyLeastRequest:
    name = "envoy p2c+outlier"

    def __init__(self, ctx: Context, outlier: OutlierConfig | None = None, choice_count: int = CHOICE_COUNT) -> None:
        self._rng = ctx.rng
        self._hosts = list(ctx.instances)
        self._active: Counter[str] = Counter()
        self._choices = choice_count
        self.detector = OutlierDetector(self._hosts, outlier or ENVOY_BENCH_OUTLIER, ctx.rng, ctx.started_s)
        self._healthy = self._hosts
        self._seen_changes = 0

    def pick(self, now: float, interface: str) -> str:
        self.detector.advance(now)
        healthy = self._healthy_hosts()
        candidate = healthy[int(self._rng.random() * len(healthy))]
        for _ in range(self._choices - 1):
            sampled = healthy[int(self._rng.random() * len(healthy))]
            if self._active[sampled] < self._active[candidate]:
                candidate = sampled
        self._active[candidate] += 1
        return candidate

    def done(self, instance: str, now: float, result: Result) -> None:
        self._active[instance] -= 1
        self.detector.result(instance, result.ok, now)

    def connection_lost(self, instance: str, now: float) -> None:
        pass  # without active health checks Envoy learns only from failed calls

    def out(self, now: float) -> frozenset[str]:
        self.detector.advance(now)
        return self.detector.ejected()

    def _healthy_hosts(self) -> list[str]:
        if self.detector.changes != self._seen_changes:
            self._seen_changes = self.detector.changes
            ejected = self.detector.ejected()
            self._healthy = [h for h in self._hosts if h not in ejected] or self._hosts
        return self._healthy


# The benchmark's Envoy: the documented defaults, plus failure-percentage ejection switched on
# (enforcing_failure_percentage 100 instead of the default 0), because issue 16 names it as part of
# the policy people run; it only ever adds ejections (>= 85% failures over >= 50 calls).
ENVOY_BENCH_OUTLIER = OutlierConfig(enforcing_failure_percentage=100)
