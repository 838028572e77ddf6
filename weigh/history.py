"""weight_history rows written in the background, so a slow or stopped ClickHouse never delays a feed.

`submit` never blocks: batches wait in a bounded queue while the store is down and are written in
order when it answers again; past `max_pending` batches the oldest is dropped and counted (the feed
on svcpulse.weights is the live record; history is for dashboards and audit).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Any

from api.queries import weights as wq
from pipeline.store import Store, StoreError

log = logging.getLogger("svcpulse.weigh")


class HistoryWriter:
    def __init__(self, store: Store, max_pending: int = 600, retry_s: float = 2.0) -> None:
        self.store, self.retry_s = store, retry_s
        self.dropped = 0
        self.last_error = ""
        self._pending: collections.deque[list[dict[str, Any]]] = collections.deque(maxlen=max_pending)
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="weight-history", daemon=True)
        self._thread.start()

    def submit(self, feeds: Sequence[dict[str, Any]]) -> None:
        with self._wake:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(list(feeds))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending:
                    return
                batch = self._pending[0]
            try:
                wq.insert_history(self.store, batch)
            except StoreError as err:
                if str(err) != self.last_error:  # once per distinct error, not every retry
                    log.warning("weight_history not written (kept, %d batches waiting): %s", len(self._pending), err)
                self.last_error = str(err)
                with self._wake:
                    self._wake.wait(self.retry_s)
                    if self._stopping:
                        return
                continue
            self.last_error = ""
            with self._wake:
                if self._pending and self._pending[0] is batch:
                    self._pending.popleft()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending (for up to timeout_s), then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout_s)
