"""The weight loop: every few seconds, calls + registry + overrides + releases -> published feeds.

Runs as one asyncio task in the API's lifespan. The store is synchronous, so each cycle's queries
and engine steps run in a worker thread; the finished feeds are swapped in on the event loop, and
long-polls waiting for a new revision are woken at once. Engine state (EngineState per service)
lives only here, in memory: a restart only forgets slow-start ramps and ejection counts.
A write through the API calls `kick()` so its effect is published without waiting for the timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from api.queries import discovery as dq
from api.queries import registry as reg
from api.queries import weights as wq
from core.caps_report import CYCLE_SECONDS, CapReporter
from core.settings import Settings
from pipeline.store import Store, StoreError
from weights.admission import admit, authority
from weights.canary import CanaryGuard, canary_verdict
from weights.caps import Caps, Ledger, observations, track
from weights.engine import compute_weights
from weights.feed import apply_canary, build_feed
from weights.inputs import build_windows, to_overrides
from weights.model import DEFAULT_CONFIG, EngineConfig, EngineState, InstanceWindow

log = logging.getLogger("svcpulse.weights")
SYSTEM = "svcpulse"  # the "user" recorded when the loop itself changes something (canary abort)


class WeightService:
    def __init__(self, store: Store, settings: Settings, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.store, self.settings = store, settings
        self.config = replace(config, window_s=settings.weights_window_s)
        self.feeds: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, bytes] = {}  # serialised once per cycle: the feed is read far more than built
        self.index: dict[str, Any] = {"revision": "", "services": []}
        self.index_body = b""
        self.ready = False
        self.last_error = ""
        self._states: dict[str, EngineState] = {}
        self.caps = Caps(settings.cap_services_per_hour, settings.cap_instances_per_service,
                         settings.cap_interfaces_per_service)
        self._ledger = Ledger()
        self._caps_report = CapReporter(self.caps)
        self._refusals_counted_ms = 0
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                with CYCLE_SECONDS.time():
                    feeds = await asyncio.to_thread(self.compute, int(time.time() * 1000))
                self._publish(feeds)
            except StoreError as err:
                # An outage is not a crash: keep serving the last feeds, try again next cycle.
                self.last_error = str(err)
                log.warning("weights not recomputed: %s", err)
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.weights_interval_s)

    def kick(self) -> None:
        """Recompute now (thread-safe: write handlers run in FastAPI's thread pool)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping = True
        self.kick()

    def revision(self, service: str | None) -> str | None:
        if service is None:
            return self.index["revision"] if self.ready else None
        feed = self.feeds.get(service)
        return feed["revision"] if feed else None

    async def wait_change(self, service: str | None, revision: str, timeout_s: float) -> None:
        """Return when the revision differs from `revision`, or after timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.revision(service) == revision and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def body(self, service: str | None) -> bytes:
        """The serialised feed; while the store is unreachable, the last one marked stale with the reason."""
        if not self.last_error:
            return self.index_body if service is None else self.bodies[service]
        feed = self.index if service is None else self.feeds[service]
        return orjson.dumps({**feed, "stale": True, "stale_reason": self.last_error})

    def _publish(self, feeds: dict[str, dict[str, Any]]) -> None:
        self.feeds = feeds
        self.bodies = {name: orjson.dumps(feed) for name, feed in feeds.items()}
        revisions = ",".join(f"{name}={feed['revision']}" for name, feed in sorted(feeds.items()))
        self.index = {"revision": hashlib.sha256(revisions.encode()).hexdigest()[:16],
                      "services": [feeds[name] for name in sorted(feeds)]}
        self.index_body = orjson.dumps(self.index)
        self.ready, self.last_error = True, ""
        # Swap the event before setting the old one: waiters woken now re-check the new revision,
        # and later waiters park on a fresh, unset event.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def compute(self, now_ms: int) -> dict[str, dict[str, Any]]:
        """One cycle (in a worker thread): read, cap, admit, step the engine, apply releases, record.

        Only registered instances and those a discovery policy admits reach the engine
        (weights/admission.py); telemetry past a cardinality cap creates nothing (weights/caps.py).
        """
        forget_s = self.settings.forget_instance_s
        made = authority(reg.instances(self.store), reg.services(self.store), dq.policies(self.store))
        observed = wq.observed_instances(self.store, now_ms, self.config.window_s, forget_s,
                                         self.caps.interfaces_per_service + 1, {s for s, _ in made.instances},
                                         made.policies.keys(), self.caps.instances_per_service)
        room = self._ledger.room(now_ms, self.caps)
        unmade = wq.unmade_services(self.store, now_ms, forget_s, made.operator_made,
                                    self._ledger.services.keys() - made.operator_made, room)
        tracked = track(self._ledger, observations(unmade + observed), now_ms, self.caps, forget_s * 1000,
                        made.operator_made, made.instances.keys())
        self._ledger = tracked.ledger
        self._caps_report.report(tracked, self._services_refused(now_ms, made.operator_made, room))
        observed = [row for row in observed if (row["service"], row["instance"]) in tracked.accepted]
        admission = admit(observed, made, now_ms, forget_s * 1000)
        windows = build_windows(admission.observations(observed), admission.routable, self.config.window_s)
        overrides = to_overrides(reg.overrides(self.store))
        releases = {r["service"]: r for r in reg.releases(self.store)}
        feeds = {}
        for service in sorted(admission.feed_services | windows.keys()):
            service_windows = windows.get(service, [])
            result = compute_weights(service_windows, self._states.get(service, EngineState()), now_ms,
                                     self.config, overrides.get(service))
            self._states[service] = result.state
            feeds[service] = self._with_release(build_feed(service, result), service_windows, releases.get(service))
        self._states = {name: state for name, state in self._states.items() if name in feeds}
        wq.insert_history(self.store, list(feeds.values()))
        return feeds

    def _services_refused(self, now_ms: int, made: frozenset[str], room: int) -> int | None:
        """Services over the hourly cap, counted by a scan at most once a minute while the cap is full."""
        if room > 0:
            return 0
        if now_ms - self._refusals_counted_ms < 60_000:
            return None
        self._refusals_counted_ms = now_ms
        seen = wq.unmade_count(self.store, now_ms, self.settings.forget_instance_s, made)
        return max(0, seen - len(self._ledger.services.keys() - made))

    def _with_release(self, feed: dict[str, Any], windows: Sequence[InstanceWindow],
                      release: Mapping[str, Any] | None) -> dict[str, Any]:
        """Apply a gray release; abort it (back to 0%, recorded) when the canary does worse."""
        if release is None or release["state"] not in ("active", "aborted"):
            return feed
        if release["state"] == "active":
            guard = CanaryGuard(release["error_margin"], release["p99_margin"], self.settings.canary_min_requests)
            why = canary_verdict(windows, release["canary_version"], guard)
            if why:
                release = self._abort(release, why)
        percent = release["percent"] if release["state"] == "active" else 0.0
        out = apply_canary(feed, release["canary_version"], percent)
        out["release"] = {"canary_version": release["canary_version"], "percent": percent,
                          "state": release["state"], "reason": release["reason"]}
        return out

    def _abort(self, release: Mapping[str, Any], why: str) -> dict[str, Any]:
        aborted = {**release, "state": "aborted", "reason": f"aborted automatically: {why}",
                   "changed_ms": reg.stamp_ms(), "changed_by": SYSTEM}
        reg.write_release(self.store, aborted)
        reg.record_audit(self.store, user=SYSTEM, role="system", action="release.abort", service=release["service"],
                         target=release["canary_version"], detail={"percent_before": release["percent"]}, why=why)
        log.warning("gray release of %s %s aborted: %s", release["service"], release["canary_version"], why)
        return aborted
