"""The loader's settings and the tuning constants its measurements chose (docs/scaling.md)."""

from __future__ import annotations

from dataclasses import dataclass

# A batch holds a few container objects per message for about a second. With CPython's default collector
# thresholds (700, 10, 10) that meant ~100 young collections per poll and full ones walking every row
# held: ~3 us of CPU per row, a third of the loader's (docs/scaling.md). The loader's path makes no
# reference cycles, so collecting rarely only delays freeing cycles made elsewhere in the process.
GC_THRESHOLDS = (100_000, 10, 10)
# Both Kafka clients keep one fetch in flight per broker and leave out partitions whose prefetch is full.
# While the loader inserted, that fetch asked only for idle partitions (an empty tcp or load topic) and the
# broker held it for the clients' default 500 ms, so the drained busy partitions waited for it: at the
# assignment and after each insert. 50 ms: a 1M-event drain 11.5 -> 9.6 s; an idle loader sends ~20
# fetches/s per broker instead of 2 (docs/scaling.md).
FETCH_MAX_WAIT_MS = 50


@dataclass(frozen=True)
class LoaderConfig:
    bootstrap: str
    group_id: str = "svcpulse-loader"
    batch_rows: int = 100_000  # ClickHouse likes few large inserts ("too many parts" otherwise)
    batch_age_s: float = 1.0
    poll_timeout_ms: int = 200
    # Messages one poll hands out at most. 5,000 rather than 20,000: a poll's messages go through several
    # passes (Message tuples, runs, decoding, lines); fewer at a time stay in the CPU's caches. Same run,
    # 3M events, JSON lines: 256,041 vs 213,126 rows/s steady (docs/scaling.md).
    poll_records: int = 5_000
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    partitions: int = 4
    kafka_client: str = "kafka-python"  # or "confluent" (librdkafka), see core/kafka
    # The plausibility window: events stamped outside [now - max_age_s, now + max_future_s] are
    # dead-lettered (rows in partitions retention drops at once, or years ahead, help nobody).
    max_age_s: float = 7 * 86_400
    max_future_s: float = 3_600
    stall_s: float = 60.0  # not ready when nothing was committed this long while messages wait
