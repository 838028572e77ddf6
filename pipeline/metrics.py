"""Prometheus metrics of the pipeline (served at the API's /metrics and the loader's metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS = Counter("svcpulse_loader_rows", "Rows inserted into ClickHouse", ["table"])
BATCHES = Counter("svcpulse_loader_batches", "Batches inserted and committed")
DEAD_LETTERS = Counter("svcpulse_loader_dead_letters", "Messages sent to the dead-letter topic", ["topic"])
DUPLICATES = Counter("svcpulse_loader_redelivered_skipped", "Redelivered rows skipped (already inserted)")
INSERT_FAILURES = Counter("svcpulse_loader_insert_failures", "Failed insert attempts (retried)")
INSERT_SECONDS = Histogram("svcpulse_loader_insert_seconds", "Time to insert one batch",
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ROWS_PER_SECOND = Gauge("svcpulse_loader_rows_per_second", "Rows inserted per second, last interval")
LAG = Gauge("svcpulse_loader_consumer_lag", "Messages in Kafka not yet taken by the loader",
            ["topic", "partition"])
PAUSED = Gauge("svcpulse_loader_paused", "1 while the loader waits for the store to recover")
