"""Following the control topic: the small tables (weights/control.py) kept current in one process.

Start: the tables are read once from ClickHouse (in a thread, retried while the store is down) and
svcpulse.control is read from its beginning (compacted: one row per key). Then every poll applies
what arrived. Rows merge by changed_ms, so the two sources may interleave.
Intents are collected for the lease holder (api/leader.py); workers ignore them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from api.queries import discovery as dq
from api.queries import registry as reg
from pipeline import topics
from pipeline.store import Store, StoreError
from weigh.kafka import reader
from weights import control

log = logging.getLogger("svcpulse.control")


class ControlFollower:
    def __init__(self, client: str, bootstrap: str, client_id: str, collect_intents: bool = False) -> None:
        self.collect_intents = collect_intents
        self.view = control.ControlView()
        self.intents: dict[str, dict[str, Any]] = {}  # newest per key, until the lease holder takes them
        self.snapshot_loaded = False
        self._snapshot: dict[str, list[dict[str, Any]]] | None = None
        self._closed = threading.Event()
        self._consumer = reader(client, bootstrap, client_id)
        partitions = self._consumer.partitions_for(topics.CONTROL)
        self._consumer.assign({(topics.CONTROL, p): None for p in partitions})  # from the beginning

    def read_snapshot_in_background(self, store: Store, retry_s: float = 5.0) -> None:
        """Read the tables from ClickHouse in a thread (retrying while it is down); `poll` merges them."""

        def read() -> None:
            while not self._closed.is_set():
                try:
                    self._snapshot = snapshot(store)
                    return
                except StoreError as err:
                    log.info("control tables not read from ClickHouse yet (the topic alone until then): %s", err)
                    self._closed.wait(retry_s)

        threading.Thread(target=read, name="control-snapshot", daemon=True).start()

    def _merge_snapshot(self) -> bool:
        tables, self._snapshot = self._snapshot, None
        changed = False
        for table, rows in (tables or {}).items():
            changed |= self.view.apply(table, rows)
        self.snapshot_loaded = self.snapshot_loaded or tables is not None
        return changed

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Apply what arrived (and the ClickHouse snapshot once read); True when a table changed."""
        changed = self._merge_snapshot() if self._snapshot is not None else False
        for message in self._consumer.poll(timeout_s):
            if message.value is None:
                continue
            try:
                doc = control.decode(message.value)
            except ValueError as err:
                log.warning("control message %s@%d skipped: %s", message.partition, message.offset, err)
                continue
            if "intent" in doc:
                if self.collect_intents:
                    self.intents[(message.key or b"").decode()] = doc
            else:
                changed |= self.view.apply(doc["table"], [doc["row"]])
        return changed

    def take_intents(self) -> dict[str, dict[str, Any]]:
        taken, self.intents = self.intents, {}
        return taken

    def close(self) -> None:
        self._closed.set()
        self._consumer.close()


def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {"registry_services": reg.services(store), "registry_instances": reg.instances(store),
            "weight_overrides": reg.overrides(store), "releases": reg.releases(store),
            "user_roles": reg.held_role_rows(store), "discovery_policies": dq.policy_rows(store)}
