"""A batch of rows per table plus the highest offset seen per partition; ready by size or by age.

The clock is injected so tests need no sleeping. Offsets cover every message taken into the batch,
including those sent to the dead-letter topic, so a commit after the insert covers them too. Each
row's message is kept (by reference), so a row the store refuses can be dead-lettered with its
original bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.kafka import Message

Clock = Callable[[], float]
DRAINED_FLUSH_DIVISOR = 10  # after an empty poll, a batch of max_rows / 10 rows or more is written at once
TopicPartition = tuple[str, int]


@dataclass
class Batch:
    max_rows: int = 100_000
    max_age_s: float = 1.0
    clock: Clock = time.monotonic
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # kind -> rows
    messages: dict[str, list[Message]] = field(default_factory=dict)  # kind -> each row's message
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # highest offset taken
    # Blocks whose insert failed for a reason other than their data (server died, timeout): the store may
    # hold their raw rows without all their rollup rows (pipeline/rollup_repair.py checks on a cluster).
    unsure: list[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=list)  # (table, rows)
    started_at: float | None = None
    size: int = 0
    _by_position: dict[tuple[str, int, int], Message] = field(default_factory=dict)
    _dead: set[tuple[str, int, int]] = field(default_factory=set)

    def add_row(self, kind: str, row: tuple[Any, ...], message: Message) -> None:
        self.rows.setdefault(kind, []).append(row)
        self.messages.setdefault(kind, []).append(message)
        self.size += 1

    def add_rows(self, kind: str, rows: list[tuple[Any, ...]], messages: Sequence[Message]) -> None:
        """Rows made from `messages`, in the same order (pipeline/transform.transform_run)."""
        self.rows.setdefault(kind, []).extend(rows)
        self.messages.setdefault(kind, []).extend(messages)
        self.size += len(rows)

    def add_sent(self, kind: str, messages: Sequence[Message]) -> None:
        """Messages whose rows were already sent to the store (pipeline/line_streams.py)."""
        self.messages.setdefault(kind, []).extend(messages)
        self.size += len(messages)

    def add_dead_letter(self, event: dict[str, Any]) -> None:
        """Add once per source message (a retried bisection finds the same refused rows again)."""
        where = (event["topic"], event["partition"], event["offset"])
        if where not in self._dead:
            self._dead.add(where)
            self.dead_letters.append(event)

    def message_of(self, row: tuple[Any, ...]) -> Message:
        """The message a row came from (rows end with topic, partition, offset, Kafka time); the index is
        built on first use, which only a row the store refuses needs."""
        if not self._by_position:
            self._by_position = {(m.topic, m.partition, m.offset): m for ms in self.messages.values() for m in ms}
        return self._by_position[row[-4:-1]]

    def mark(self, topic: str, partition: int, offset: int) -> None:
        """Record a consumed offset (rows or not); the age clock starts with the first one."""
        if self.started_at is None:
            self.started_at = self.clock()
        key = (topic, partition)
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset

    @property
    def empty(self) -> bool:
        return not self.offsets

    def ready(self, drained: bool = False) -> bool:
        """Full, or as old as max_age_s; or, when the last poll came back empty (`drained`: nothing more
        is waiting), holding at least a tenth of max_rows. Such a batch is already large enough to be an
        efficient insert and waiting adds only delay (ClickHouse's Kafka engine also writes when its
        poll runs dry); a trickle of smaller batches still waits for the age, so inserts stay few."""
        if self.started_at is None:
            return False
        return (self.size >= self.max_rows or self.clock() - self.started_at >= self.max_age_s
                or (drained and self.size * DRAINED_FLUSH_DIVISOR >= self.max_rows))


def columns(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows transposed into columns, as columnar inserts want them (tuples: both stores take them as
    they are, and a copy into lists cost the loader ~0.5 us a row)."""
    return list(zip(*rows, strict=True))
