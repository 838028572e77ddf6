"""A batch's JSON-lines inserts in flight: rows go to the server while the batch is still being taken.

With a store that takes JSON lines over HTTP (pipeline/store/http_insert.py), the loader sends each run
of rows as soon as it has taken it, one open insert per table, so the server parses batch N while the
loader polls and decodes the rest of batch N; the flush then only ends the requests and reads their
answers. Nothing about the guarantees changes: offsets are committed after every answer, as before.

Only rows of partitions the redelivery guard has stopped checking are streamed (the guard must see a
row before it is sent); the others wait in the batch for the flush. When a request fails, its rows go
back into the batch: refused data is bisected by the writer as usual, any other failure makes the loader
retry the whole batch without streaming, with the guard checking every partition again.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.batch import Batch
from pipeline.store import StoreError
from pipeline.store.http_insert import HttpInserts, JsonInsert
from pipeline.topics import TABLE_BY_KIND
from pipeline.transform import COLUMNS, as_lines

log = logging.getLogger("svcpulse.loader")
Row = tuple[Any, ...]


class LineStreams:
    def __init__(self, inserts: HttpInserts) -> None:
        self.inserts = inserts
        self.open: dict[str, JsonInsert] = {}  # kind -> its insert in flight
        self.sent: dict[str, list[Row]] = {}  # kind -> the rows that insert carries
        self.failed: StoreError | None = None  # the batch's first failure: no more streaming in it

    def send(self, kind: str, rows: list[Row]) -> bool:
        """Send rows of `kind` now; False (nothing sent) once a request of this batch has failed."""
        if self.failed is not None:
            return False
        try:
            if kind not in self.open:
                self.open[kind] = self.inserts.open(TABLE_BY_KIND[kind], COLUMNS[kind])
                self.sent[kind] = []
            self.open[kind].send(as_lines(kind, rows))
        except StoreError as err:
            self.failed = err
            log.warning("streaming %s rows failed (%s); the batch is written at its flush", kind, err)
            self._return_sent()
            return False
        self.sent[kind].extend(rows)
        return True

    def end(self) -> bool:
        """End every request without waiting for the answers (the loader takes the next batch meanwhile);
        False when a request failed (the caller then settles the batch at once)."""
        if self.failed is None:
            try:
                for request in self.open.values():
                    request.end()
                return True
            except StoreError as err:
                self.failed = err
        return False

    def settle(self, batch: Batch) -> dict[str, int]:
        """End every request and read its answer: rows stored per kind. Rows of a request that failed
        go back into `batch` (with its rows of that kind) for the writer; a failure other than refused
        data is raised after every request has ended (the batch is retried as a whole)."""
        stored: dict[str, int] = {}
        errors = [self.failed] if self.failed is not None else []
        for kind, request in self.open.items():
            try:
                request.finish()
                stored[kind] = len(self.sent.pop(kind))
            except StoreError as err:
                errors.append(err)
        self._return_sent(batch)
        self.failed = None
        transient = [err for err in errors if not err.rejected]
        if transient:
            raise transient[0]
        return stored

    def _return_sent(self, batch: Batch | None = None) -> None:
        """Abort what is open and keep the unanswered rows for the batch (handed over at settle)."""
        for request in self.open.values():
            request.abort()
        self.open.clear()
        if batch is not None:  # a partition's sent rows precede its rows still in the batch (offset order)
            for kind, rows in self.sent.items():
                batch.rows[kind] = [*rows, *batch.rows.get(kind, [])]
                batch.unsure.append((TABLE_BY_KIND[kind], rows))  # the server may have stored them
            self.sent.clear()
