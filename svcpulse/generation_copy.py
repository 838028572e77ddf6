"""Copy what a broker generation must keep into the next one, at the same offsets.

The embedded broker (Tansu, memory storage) never frees a message. The rolling broker
(svcpulse/rolling_broker.py) replaces it by a fresh process from time to time; this module decides
what survives and writes it so that, to every Kafka client, the switch looks like a broker restart:
  - every topic is created again with its partition count and configs;
  - every partition keeps its offsets: what is dropped becomes an invisible control-batch filler,
    what is kept is copied batch by batch (producer ids cleared), the end offset is the same;
  - every group's committed offsets are written again.
What is kept per partition, Kafka's own cleanup policies applied once at the switch:
  - cleanup.policy=compact: the newest record of each key, at its offset (log compaction);
  - otherwise, when some consumer group is reading the partition: everything from the lowest
    offset those groups committed (consumed data goes, unconsumed data stays: nothing is lost);
  - otherwise (nobody reads it, e.g. svcpulse.dlq): the newest `keep_unread` records.
The old generation must be frozen first (no producer can reach it), so the copy is exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from svcpulse import record_batch
from svcpulse.kafka_wire import Connection, Partitions, WireError, batches

log = logging.getLogger("svcpulse.broker")

KEEP_UNREAD = 100_000  # records kept per partition that no consumer group reads
_SPARSE_CHUNK = 500  # records per batch when writing a compacted partition
_READING_STATES = {"Stable", "PreparingRebalance", "CompletingRebalance", "AssigningPartitions"}


@dataclass
class CopyReport:
    """What one switch kept and dropped, summed over partitions (offsets, so records for our topics)."""

    kept: int = 0
    dropped: int = 0
    batches: int = 0
    groups: int = 0
    lost_unread: dict[tuple[str, int], int] = field(default_factory=dict)  # dropped though nobody read them


def reading_from(tp: tuple[str, int], committed: dict[str, Partitions], reading: Iterable[str]) -> int | None:
    """The lowest offset a reading group committed on `tp`, or None when no reading group did."""
    offsets = [committed[group][tp] for group in reading if tp in committed.get(group, {})]
    return min(offsets) if offsets else None


def copy_generation(old: Connection, new: Connection, pinned: Iterable[str] = (),
                    keep_unread: int = KEEP_UNREAD) -> CopyReport:
    """Copy topics, kept records and committed offsets from the frozen `old` broker into `new`.

    `pinned` groups count as reading even when they have no member at this moment (the loader
    between two sessions), so their unloaded records are always kept.
    """
    topics = old.topics()
    states = old.groups()
    committed = {group: old.committed(group, topics) for group in states}
    reading = {group for group, state in states.items() if state in _READING_STATES} | set(pinned)
    report = CopyReport(groups=len(committed))
    for topic, partitions in sorted(topics.items()):
        configs = old.topic_configs(topic)
        new.create_topic(topic, partitions, configs)
        compact = "compact" in configs.get("cleanup.policy", "")
        for partition in range(partitions):
            tp = (topic, partition)
            start = reading_from(tp, committed, reading)
            _copy_partition(old, new, tp, start, compact, keep_unread, report)
    for group, offsets in committed.items():
        if offsets:
            new.commit(group, offsets)
    return report


class _Writer:
    """Appends to one partition of the new broker, filling gaps so offsets stay those of the old one."""

    def __init__(self, conn: Connection, tp: tuple[str, int]) -> None:
        self.conn, self.tp, self.end, self.batches = conn, tp, 0, 0

    def _append(self, batch: bytes, last_offset: int) -> None:
        given = self.conn.produce(*self.tp, batch)
        if given != self.end:
            raise WireError(f"{self.tp}: the new broker put a batch at {given}, expected {self.end}")
        self.end, self.batches = last_offset + 1, self.batches + 1

    def fill_to(self, offset: int) -> None:
        """Make [end, offset) an invisible gap."""
        if offset > self.end:
            self._append(record_batch.filler(offset - self.end, int(time.time() * 1000)), offset - 1)

    def copy(self, base: int, last: int, batch: bytes) -> None:
        self.fill_to(base)
        self._append(record_batch.rebased(batch), last)

    def sparse(self, kept: list[record_batch.Record]) -> None:
        for at in range(0, len(kept), _SPARSE_CHUNK):
            chunk = kept[at:at + _SPARSE_CHUNK]
            self._append(record_batch.sparse(chunk, self.end), chunk[-1].offset)


def _read(old: Connection, tp: tuple[str, int], start: int) -> tuple[int, list[tuple[int, int, bytes]]]:
    """(end offset, every batch holding an offset >= start) of the old partition."""
    end, found, offset = 0, [], start
    while True:
        end, raw = old.fetch(*tp, offset)
        fetched = [b for b in batches(raw) if b[1] >= offset]
        if not fetched:
            return max(end, offset), found
        found += fetched
        offset = fetched[-1][1] + 1


def _copy_partition(old: Connection, new: Connection, tp: tuple[str, int], start: int | None, compact: bool,
                    keep_unread: int, report: CopyReport) -> None:
    writer = _Writer(new, tp)
    if compact:
        end, found = _read(old, tp, 0)
        newest = {r.key: r for _base, _last, batch in found for r in record_batch.records(batch)}
        kept = sorted((r for r in newest.values() if r.key is not None), key=lambda r: r.offset)
        writer.fill_to(kept[0].offset if kept else end)
        writer.sparse(kept)
        kept_count = len(kept)
    else:
        if start is None:  # nobody reads it: keep the newest records, like retention.bytes would
            end, _ = old.fetch(*tp, 0, max_bytes=1)
            start = max(0, end - keep_unread)
            if start:
                report.lost_unread[tp] = start
        end, found = _read(old, tp, start)
        for base, last, batch in found:
            writer.copy(base, last, batch)
        kept_count = end - start
    writer.fill_to(end)
    report.kept += kept_count
    report.dropped += end - kept_count
    report.batches += writer.batches
