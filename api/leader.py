"""Work done once, by the lease holder: recording what the weigh workers asked for (their intents).

Workers apply a canary abort to their own feeds at once and send an intent on svcpulse.control
(weigh/publisher.py); every API replica collects them (api/weights/service.py), and only the lease
holder writes them: the aborted release row and its audit entry. The rows then reach every worker
through svcpulse.control (api/control.py). (Telemetry writes no registry rows: weights/admission.py
decides in every cycle what is routable.)
Intents are idempotent: what the store already holds is skipped, so a new holder may replay them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from api.queries import registry as reg
from api.weights.service import WeightService
from pipeline.store import Store, StoreError
from weigh.lease import Lease
from weights.cycle import SYSTEM

log = logging.getLogger("svcpulse.leader")
PASS_S = 0.5
MAX_WAITING = 10_000  # intents kept while no replica holds the lease (oldest dropped beyond)


class Leader:
    def __init__(self, store: Store, weights: WeightService, lease: Lease) -> None:
        self.store, self.weights, self.lease = store, weights, lease
        self.waiting: dict[str, dict[str, Any]] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            for key, intent in self.weights.take_intents().items():
                self.waiting.pop(key, None)
                self.waiting[key] = intent
            while len(self.waiting) > MAX_WAITING:
                self.waiting.pop(next(iter(self.waiting)))
            if self.waiting and self.lease.held():
                try:
                    await asyncio.to_thread(self.record, dict(self.waiting))
                    self.waiting.clear()
                except StoreError as err:
                    log.warning("intents not recorded yet (%d waiting): %s", len(self.waiting), err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PASS_S)

    def stop(self) -> None:
        self._stopping.set()

    def record(self, intents: Mapping[str, Mapping[str, Any]]) -> None:
        for intent in intents.values():
            if intent["intent"] == "release.abort":
                self._abort(intent["release"])
        self.weights.kick()

    def _abort(self, aborted: Mapping[str, Any]) -> None:
        current = reg.releases(self.store, aborted["service"])
        if not current or current[0]["state"] != "active" or current[0]["changed_ms"] >= aborted["changed_ms"] \
                or current[0]["canary_version"] != aborted["canary_version"]:
            return  # already recorded, or the operator changed the release since
        reg.write_release(self.store, aborted)
        reg.record_audit(self.store, user=SYSTEM, role="system", action="release.abort", service=aborted["service"],
                         target=aborted["canary_version"], detail={"percent_before": current[0]["percent"]},
                         why=aborted["reason"].removeprefix("aborted automatically: "))
        log.warning("gray release of %s %s aborted: %s", aborted["service"], aborted["canary_version"],
                    aborted["reason"])
