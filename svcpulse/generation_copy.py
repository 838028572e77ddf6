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
  - otherwise everything from the lowest offset any consumer group committed on the partition
    (consumed data goes, unconsumed data stays), or all of it when no group ever committed there
    (e.g. svcpulse.dlq until someone replays it);
  - but never more than the newest `keep_unread` offsets of a partition, so a consumer that is gone
    for good cannot make the broker grow without bound (what that cuts is logged, per partition);
    a group that still has members is behind, not gone, and keeps its whole backlog.
The old generation must be frozen first (no producer can reach it), so the copy is exact.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from svcpulse import record_batch
from svcpulse.kafka_wire import Connection, Partitions, WireError, batches

log = logging.getLogger("svcpulse.broker")

KEEP_UNREAD = 200_000  # offsets kept at most per partition (a few tens of MB of events)
_SPARSE_CHUNK = 500  # records per batch when writing a compacted partition
_READ_WAIT_MS = 500  # below the end a fetch may take its time to gather records
_SILENT_FETCHES = 20  # empty answers in a row below a partition's end before the copy gives up (~10 s)


@dataclass
class CopyReport:
    """What one switch kept and dropped, summed over partitions (offsets, so records for our topics)."""

    kept: int = 0
    dropped: int = 0
    batches: int = 0
    groups: int = 0
    cut: dict[tuple[str, int], int] = field(default_factory=dict)  # offsets dropped by the keep_unread cap


def keep_from(tp: tuple[str, int], end: int, committed: dict[str, Partitions], keep_unread: int,
              live: frozenset[str] = frozenset()) -> int:
    """The first offset of `tp` the next generation keeps (see the module docstring)."""
    offsets = [by_tp[tp] for by_tp in committed.values() if tp in by_tp]
    capped = max(min(offsets, default=0), end - keep_unread, 0)
    needed = [committed[group][tp] for group in live if tp in committed.get(group, {})]
    return min([capped, *needed])  # a group with members is behind, not gone: its backlog stays


def copy_generation(old: Connection, new: Connection, keep_unread: int = KEEP_UNREAD,
                    live: frozenset[str] = frozenset()) -> CopyReport:
    """Copy topics, kept records and committed offsets from the frozen `old` broker into `new`;
    `live`: the groups that had members before the freeze (the keep_unread cap spares what they need)."""
    topics = old.topics()
    committed = {group: old.committed(group, topics) for group in old.groups()}
    report = CopyReport(groups=len(committed))
    for topic, partitions in sorted(topics.items()):
        configs = old.topic_configs(topic)
        new.create_topic(topic, partitions, configs)
        compact = "compact" in configs.get("cleanup.policy", "")
        for partition in range(partitions):
            _copy_partition(old, new, (topic, partition), committed, compact, (keep_unread, live), report)
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


def _read(old: Connection, tp: tuple[str, int], start: int, end: int) -> list[tuple[int, int, bytes]]:
    """Every batch of the old partition holding an offset in [start, end), `end` its (frozen) end.

    A fetch answer without a batch below the end is not the end: Tansu answers empty when its
    fetch wait (10 ms) passes before it has gathered the records, which a loaded machine makes
    common on a long partition. Taking that for the end filled the rest with a gap (the soaks'
    lost ranges), so it is asked again, and a partition that stays silent fails the roll: the old
    generation goes back in front with everything in it."""
    found: list[tuple[int, int, bytes]] = []
    offset, silent = start, 0
    while offset < end:
        max_bytes = (4 << 20) << min(silent, 4)  # also when the answer ends in a part of one larger batch
        _, raw = old.fetch(*tp, offset, max_bytes=max_bytes, wait_ms=_READ_WAIT_MS)
        fetched = [b for b in batches(raw) if b[1] >= offset]
        if not fetched:
            silent += 1
            if silent > _SILENT_FETCHES:
                raise WireError(f"{tp}: the old broker answers nothing at offset {offset}, below its end {end}")
            time.sleep(0.05 * silent)
            continue
        silent = 0
        found += fetched
        offset = fetched[-1][1] + 1
    return found


def _copy_partition(old: Connection, new: Connection, tp: tuple[str, int], committed: dict[str, Partitions],
                    compact: bool, cap: tuple[int, frozenset[str]], report: CopyReport) -> None:
    writer = _Writer(new, tp)
    end = old.end_offset(*tp)
    if compact:
        found = _read(old, tp, 0, end)
        newest = {r.key: r for _base, _last, batch in found for r in record_batch.records(batch)}
        kept = sorted((r for r in newest.values() if r.key is not None), key=lambda r: r.offset)
        writer.fill_to(kept[0].offset if kept else end)
        writer.sparse(kept)
        kept_count = len(kept)
    else:
        start = keep_from(tp, end, committed, *cap)
        unread = min((by_tp[tp] for by_tp in committed.values() if tp in by_tp), default=0)
        if start > unread:
            report.cut[tp] = start - unread
        found = _read(old, tp, start, end)
        for base, last, batch in found:
            writer.copy(base, last, batch)
        kept_count = end - start
    writer.fill_to(end)
    report.kept += kept_count
    report.dropped += end - kept_count
    report.batches += writer.batches
