"""Prometheus metrics of a weigh worker (served on `svcpulse weigh --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("svcpulse_weigh_events", "rpc events counted into the windows")
REJECTED = Counter("svcpulse_weigh_rejected_events", "rpc events not counted: invalid (the loader dead-letters them)")
TCP_EVENTS = Counter("svcpulse_weigh_tcp_events", "callers' connections (svcpulse.tcp) counted into the "
                     "connection-health windows")
TCP_REJECTED = Counter("svcpulse_weigh_tcp_rejected_events", "tcp events of a wanted port not counted: invalid")
MISROUTED = Counter("svcpulse_weigh_misrouted_events", "rpc events on a partition other than their callee's "
                    "home partition (a producer not partitioning by murmur2 of the key)")
PUBLISHED = Counter("svcpulse_weigh_feeds_published", "feed messages sent to svcpulse.weights", ["kind"])
INTENTS = Counter("svcpulse_weigh_intents", "intents sent to the lease holder", ["kind"])
TICK_SECONDS = Histogram("svcpulse_weigh_tick_seconds", "time of one engine tick over the owned services",
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
TAKEOVER_SECONDS = Histogram("svcpulse_weigh_takeover_seconds", "time to rebuild taken-over partitions",
                             buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ADOPTED = Gauge("svcpulse_weigh_adopted_partitions", "partitions of a silent worker whose services this worker "
                "publishes from its warm standby until the group moves them")
OWNED = Gauge("svcpulse_weigh_owned_services", "services whose feed this worker publishes")
STORE_CALLS = Counter("svcpulse_weigh_store_calls", "ClickHouse calls by the worker: queries (the start-up "
                      "snapshot of the control tables) and inserts (weight_history)", ["kind"])
