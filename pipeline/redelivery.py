"""Skip rows that were inserted before a crash but whose offsets were never committed.

After a partition is (re)assigned, the loader may be handed messages it already inserted. Until it
reaches a message that is not in the table, each flush asks the table which of the batch's
(offset, Kafka timestamp) pairs of that partition exist and drops those rows. Matching the Kafka
timestamp too keeps a fresh broker (offsets restarting at 0, as with the embedded Tansu) from
being mistaken for a redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.batch import TopicPartition
from pipeline.store import Store

_OFFSET, _KAFKA_TS = -2, -1  # provenance positions at the end of every row (see transform.py)

_PRESENT_SQL = (
    "SELECT _offset, _kafka_ts_ms FROM {table} "
    "WHERE _topic = %(topic)s AND _partition = %(partition)s AND _offset BETWEEN %(low)s AND %(high)s{settings}"
)


class RedeliveryGuard:
    def __init__(self) -> None:
        self.checking: set[TopicPartition] = set()
        # What to read for a table, and how: itself on one server; every replica on a cluster, skipping
        # one that is down (pipeline/cluster.py every_replica).
        self.source: Callable[[str], str] = lambda table: table
        self.settings = ""

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self.checking |= partitions

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.checking -= partitions

    def filter(self, store: Store, table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows not already in `table`; stops checking a partition once it is past the old inserts."""
        if not self.checking:
            return rows
        by_partition: dict[TopicPartition, list[tuple[Any, ...]]] = {}
        for row in rows:
            key = (row[-4], row[-3])
            if key in self.checking:
                by_partition.setdefault(key, []).append(row)
        already: set[tuple[TopicPartition, int]] = set()
        for (topic, partition), mine in by_partition.items():
            present = set(store.execute(_PRESENT_SQL.format(table=self.source(table), settings=self.settings), {
                "topic": topic, "partition": partition,
                "low": mine[0][_OFFSET], "high": mine[-1][_OFFSET],
            }))
            already |= {((topic, partition), row[_OFFSET]) for row in mine
                        if (row[_OFFSET], row[_KAFKA_TS]) in present}
            if (mine[-1][_OFFSET], mine[-1][_KAFKA_TS]) not in present:
                self.checking.discard((topic, partition))  # past the redelivered range
        if not already:
            return rows
        return [row for row in rows if ((row[-4], row[-3]), row[_OFFSET]) not in already]
