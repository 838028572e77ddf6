"""Notice a hole in a partition's offsets and fetch it again before loading past it.

A Kafka client hands out a partition's records in offset order, and svcpulse's topics hold one record
per offset (no compaction; svcpulse's emitters write no transactions). So a record whose offset is
past the next one expected means records were skipped on the way: kafka-python has had bugs that
discard a fetched batch while its position moves on (dpkp/kafka-python#2555), and the embedded soak G
lost one whole record batch with no error logged (docs/operations.md). Loading on would make that loss
permanent once the offsets are committed.

So at the first hole the loader seeks back to the expected offset and fetches again (the rest of that
partition's records in the poll are not taken). If the same hole comes back, the broker really has no
record there (control records of another emitter's transactions, or what the embedded broker's roll
cut for a consumer gone for good): it is logged and loading goes on. Pure: the loader does the seek.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from pipeline.batch import TopicPartition


class Verdict(Enum):
    TAKE = "take"
    REFETCH = "refetch"  # seek back to the expected offset; take nothing more of the partition this poll
    CONFIRMED = "confirmed"  # the same hole again: the broker has nothing there; take it


@dataclass
class GapGuard:
    expected: dict[TopicPartition, int] = field(default_factory=dict)  # next offset per partition
    refetched: dict[TopicPartition, int] = field(default_factory=dict)  # the hole already fetched again

    def check(self, partition: TopicPartition, offset: int) -> Verdict:
        """What to do with the partition's next record; TAKE and CONFIRMED move the expected offset on."""
        expected = self.expected.get(partition)
        if expected is not None and offset > expected and self.refetched.get(partition) != expected:
            self.refetched[partition] = expected
            return Verdict.REFETCH
        verdict = Verdict.CONFIRMED if expected is not None and offset > expected else Verdict.TAKE
        self.expected[partition] = offset + 1
        return verdict

    def taken_through(self, partition: TopicPartition, offset: int) -> None:
        """Records up to `offset` were taken in sequence after one `check` said TAKE (a contiguous run)."""
        self.expected[partition] = offset + 1

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions assigned or revoked: their position comes from the group's commit, not from us."""
        for partition in partitions:
            self.expected.pop(partition, None)
            self.refetched.pop(partition, None)
