"""Envoy's outlier detection, one detector per caller (each Envoy judges only its own calls).

Follows source/common/upstream/outlier_detection_impl.{h,cc} (envoyproxy/envoy main, read 2026-11):
- consecutive 5xx: the 5th error in a row ejects at once (refused connections and timeouts are
  local-origin errors mapped to 503/504, so they count, with split_external_local_origin_errors off);
- every `interval`, a sweep: hosts whose ejection ran out come back, then the success-rate rule
  (hosts with >= request_volume calls in the last interval, at least minimum_hosts of them: eject
  below mean - stdev_factor/1000 x population stdev) and the failure-percentage rule;
- an ejection is refused once (ejected + 1) / hosts would exceed max_ejection_percent, unless
  always_eject_one_host (default false: with fewer than 10 hosts, 10% allows no ejection at all);
- ejection time = min(base x backoff, max) + jitter; backoff grows by one per ejection and shrinks
  by one per sweep in which the host has been back for at least an interval;
- `enforcing_*` are the percent chance that a detected outlier is really ejected.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.policies.base import Timer


@dataclass(frozen=True)
class OutlierConfig:
    """envoy.config.cluster.v3.OutlierDetection with the defaults of outlier_detection_impl.h."""

    interval_s: float = 10.0  # DEFAULT_INTERVAL_MS = 10000
    base_ejection_s: float = 30.0  # DEFAULT_BASE_EJECTION_TIME_MS = 30000
    max_ejection_s: float = 300.0  # DEFAULT_MAX_EJECTION_TIME_MS = 10 * DEFAULT_BASE_EJECTION_TIME_MS
    max_ejection_percent: int = 10  # DEFAULT_MAX_EJECTION_PERCENT = 10
    always_eject_one_host: bool = False  # PROTOBUF_GET_WRAPPED_OR_DEFAULT(..., always_eject_one_host, false)
    consecutive_5xx: int = 5  # DEFAULT_CONSECUTIVE_5XX = 5
    enforcing_consecutive_5xx: int = 100  # DEFAULT_ENFORCING_CONSECUTIVE_5XX = 100
    success_rate_minimum_hosts: int = 5  # DEFAULT_SUCCESS_RATE_MINIMUM_HOSTS = 5
    success_rate_request_volume: int = 100  # DEFAULT_SUCCESS_RATE_REQUEST_VOLUME = 100
    success_rate_stdev_factor: int = 1900  # DEFAULT_SUCCESS_RATE_STDEV_FACTOR = 1900 (/1000 = 1.9)
    enforcing_success_rate: int = 100  # DEFAULT_ENFORCING_SUCCESS_RATE = 100
    failure_percentage_threshold: int = 85  # DEFAULT_FAILURE_PERCENTAGE_THRESHOLD = 85
    failure_percentage_minimum_hosts: int = 5  # DEFAULT_FAILURE_PERCENTAGE_MINIMUM_HOSTS = 5
    failure_percentage_request_volume: int = 50  # DEFAULT_FAILURE_PERCENTAGE_REQUEST_VOLUME = 50
    enforcing_failure_percentage: int = 0  # DEFAULT_ENFORCING_FAILURE_PERCENTAGE = 0 (detected, not enforced)
    max_ejection_time_jitter_s: float = 0.0  # DEFAULT_MAX_EJECTION_TIME_JITTER_MS = 0


class _Host:
    """DetectorHostMonitorImpl: counters of one host as this caller sees it."""

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.calls = self.successes = 0  # the interval being written (current bucket)
        self.last_calls = self.last_successes = 0  # the interval just swept (backup bucket)
        self.ejected = False
        self.ejected_at = 0.0
        self.unejected_at: float | None = None
        self.backoff = 0  # ejectTimeBackoff
        self.jitter_s = 0.0
        self.ejections = 0


class OutlierDetector:
    """One caller's detector over `hosts`; feed it every call result and the time."""

    def __init__(self, hosts: Sequence[str], config: OutlierConfig, rng: random.Random, started_s: float) -> None:
        self.config = config
        self._rng = rng
        self._hosts = {h: _Host() for h in hosts}
        # Envoys start at different times: each caller's sweeps have their own phase.
        self._sweeps = Timer(config.interval_s, started_s + rng.uniform(0, config.interval_s))
        self.ejected_count = 0
        self.changes = 0  # bumped on every ejection and return, so pickers can cache the healthy set

    def result(self, host: str, ok: bool, now: float) -> None:
        """putHttpResponseCode: an error is any 5xx, including mapped local-origin failures."""
        self.advance(now)
        monitor = self._hosts[host]
        monitor.calls += 1
        if ok:
            monitor.successes += 1
            monitor.consecutive_5xx = 0
            return
        monitor.consecutive_5xx += 1
        if monitor.consecutive_5xx == self.config.consecutive_5xx:
            # onConsecutiveErrorWorker: ignored while ejected; the counter resets either way.
            if not monitor.ejected:
                self._eject(host, self.config.enforcing_consecutive_5xx, now)
            monitor.consecutive_5xx = 0

    def advance(self, now: float) -> None:
        for at in self._sweeps.due(now):
            self._sweep(at)

    def ejected(self) -> frozenset[str]:
        return frozenset(h for h, m in self._hosts.items() if m.ejected)

    def _sweep(self, now: float) -> None:
        """onIntervalTimer: uneject, swap buckets, success-rate and failure-percentage rules, backoff."""
        cfg = self.config
        for monitor in self._hosts.values():
            if monitor.ejected:
                duration = min(cfg.base_ejection_s * monitor.backoff, cfg.max_ejection_s) + monitor.jitter_s
                if duration <= now - monitor.ejected_at:
                    self._uneject(monitor, now)
            monitor.last_calls, monitor.last_successes = monitor.calls, monitor.successes
            monitor.calls = monitor.successes = 0
        self._success_rate_rules(now)
        for monitor in self._hosts.values():
            back_for = now - monitor.unejected_at if monitor.unejected_at is not None else -1.0
            if not monitor.ejected and back_for >= cfg.interval_s and monitor.backoff:
                monitor.backoff -= 1

    def _success_rate_rules(self, now: float) -> None:
        cfg = self.config
        if len(self._hosts) < min(cfg.success_rate_minimum_hosts, cfg.failure_percentage_minimum_hosts):
            return
        rates = {h: 100.0 * m.last_successes / m.last_calls
                 for h, m in self._hosts.items() if not m.ejected and m.last_calls}
        volume = {h: self._hosts[h].last_calls for h in rates}
        by_rate = [(h, r) for h, r in rates.items() if volume[h] >= cfg.success_rate_request_volume]
        if by_rate and len(by_rate) >= cfg.success_rate_minimum_hosts:
            mean = math.fsum(r for _, r in by_rate) / len(by_rate)
            stdev = math.sqrt(math.fsum((r - mean) ** 2 for _, r in by_rate) / len(by_rate))
            threshold = mean - cfg.success_rate_stdev_factor / 1000.0 * stdev
            for host, rate in by_rate:
                if rate < threshold:
                    self._eject(host, cfg.enforcing_success_rate, now)
        by_failure = [(h, r) for h, r in rates.items() if volume[h] >= cfg.failure_percentage_request_volume]
        if by_failure and len(by_failure) >= cfg.failure_percentage_minimum_hosts:
            for host, rate in by_failure:
                if 100.0 - rate >= cfg.failure_percentage_threshold and not self._hosts[host].ejected:
                    self._eject(host, cfg.enforcing_failure_percentage, now)

    def _eject(self, host: str, enforcing_percent: int, now: float) -> None:
        """ejectHost: the max_ejection_percent check first, then the enforcement coin."""
        cfg = self.config
        percent = 100.0 * (self.ejected_count + 1) / len(self._hosts)
        allowed = percent <= cfg.max_ejection_percent or (cfg.always_eject_one_host and self.ejected_count == 0)
        if not allowed or self._rng.random() * 100 >= enforcing_percent:
            return
        monitor = self._hosts[host]
        monitor.ejected, monitor.ejected_at = True, now
        monitor.ejections += 1
        monitor.jitter_s = self._rng.uniform(0, cfg.max_ejection_time_jitter_s)
        if monitor.backoff * cfg.base_ejection_s < cfg.max_ejection_s + cfg.base_ejection_s:
            monitor.backoff += 1
        self.ejected_count += 1
        self.changes += 1

    def _uneject(self, monitor: _Host, now: float) -> None:
        monitor.ejected, monitor.unejected_at = False, now
        monitor.consecutive_5xx = 0
        self.ejected_count -= 1
        self.changes += 1
