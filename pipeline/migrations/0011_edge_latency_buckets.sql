-- The service map's latency as bucket counts (issue 17, "the map under load"): per (caller, callee,
-- side) and bucket, the number of calls whose latency fell in it, in minutes, ten minutes and hours
-- like rpc_edges_* (0009). A sum merges far cheaper than a t-digest: the map's p50/p99 per edge and
-- per callee are read from summed counts (api/queries/map.py, weights/sketch.py's DDSketch) instead of
-- merging rpc_edges_*'s digests. Additive only; the tables start empty (no backfill: an edge's p99
-- covers the calls loaded since this migration, docs/api.md).
-- bucket = ceil(ln(latency_ms) / ln(gamma)), gamma = 1.05 / 0.95: DDSketch's buckets at 5% relative
-- accuracy (each bucket's representative is within 5% of every latency in it); latencies at or below
-- 0.001 ms count in bucket -32768 (the sketch's zero bucket). The factor below is 1 / ln(gamma);
-- api/queries/map.py holds the same accuracy and tests/unit/test_map_buckets.py checks they agree.
-- Read with sum(calls) per bucket.
CREATE TABLE IF NOT EXISTS $db.rpc_edge_latency_1m (
    minute DateTime, caller String, callee String, side String, bucket Int16, calls UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, callee, caller, side, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_latency_1m_mv TO $db.rpc_edge_latency_1m AS
SELECT toStartOfMinute(ts) AS minute, caller, callee, side,
       if(latency_ms > 0.001, toInt16(ceil(log(latency_ms) * 9.991661103824153)), toInt16(-32768)) AS bucket,
       count() AS calls
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side, bucket;

CREATE TABLE IF NOT EXISTS $db.rpc_edge_latency_10m (
    minute DateTime, caller String, callee String, side String, bucket Int16, calls UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, callee, caller, side, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_latency_10m_mv TO $db.rpc_edge_latency_10m AS
SELECT toDateTime(intDiv(toUInt32(ts), 600) * 600) AS minute, caller, callee, side,
       if(latency_ms > 0.001, toInt16(ceil(log(latency_ms) * 9.991661103824153)), toInt16(-32768)) AS bucket,
       count() AS calls
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side, bucket;

CREATE TABLE IF NOT EXISTS $db.rpc_edge_latency_1h (
    hour DateTime, caller String, callee String, side String, bucket Int16, calls UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, callee, caller, side, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_latency_1h_mv TO $db.rpc_edge_latency_1h AS
SELECT toStartOfHour(ts) AS hour, caller, callee, side,
       if(latency_ms > 0.001, toInt16(ceil(log(latency_ms) * 9.991661103824153)), toInt16(-32768)) AS bucket,
       count() AS calls
FROM $db.rpc_calls
GROUP BY hour, caller, callee, side, bucket;
