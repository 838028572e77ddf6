"""A batch of rows per table plus the highest offset seen per partition; ready by size or by age.

The clock is injected so tests need no sleeping. Offsets cover every message taken into the batch,
including those sent to the dead-letter topic, so a commit after the insert covers them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
TopicPartition = tuple[str, int]


@dataclass
class Batch:
    max_rows: int = 100_000
    max_age_s: float = 1.0
    clock: Clock = time.monotonic
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # kind -> rows
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # highest offset taken
    started_at: float | None = None
    size: int = 0

    def add_row(self, kind: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(kind, []).append(row)
        self.size += 1

    def add_dead_letter(self, event: dict[str, Any]) -> None:
        self.dead_letters.append(event)

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

    def ready(self) -> bool:
        if self.started_at is None:
            return False
        return self.size >= self.max_rows or self.clock() - self.started_at >= self.max_age_s


def columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows transposed into columns, as columnar inserts want them."""
    return [list(column) for column in zip(*rows, strict=True)]
