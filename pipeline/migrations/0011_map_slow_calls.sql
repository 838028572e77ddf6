-- The service map's slow calls (issue 17): per (caller, callee, side) and time bucket, the calls that took
-- over a second (api/servicemap/health.SLOW_MS), so the map judges "p99 over 1 s" (more than 1% of the
-- calls slower than that) from counts alone and merges latency digests only for the edges and nodes it
-- draws (api/queries/map.py). Additive: rows rolled up before read slow = 0 (an empty sum state).
-- The views are re-created to fill the column; an insert that lands between a view's DROP and CREATE
-- is not rolled up there (run migrations while the loaders are stopped, as for every view change).

ALTER TABLE $db.rpc_edges_1m ADD COLUMN slow AggregateFunction(sum, UInt64) AFTER timeouts;
ALTER TABLE $db.rpc_edges_10m ADD COLUMN slow AggregateFunction(sum, UInt64) AFTER timeouts;
ALTER TABLE $db.rpc_edges_1h ADD COLUMN slow AggregateFunction(sum, UInt64) AFTER timeouts;

DROP TABLE IF EXISTS $db.rpc_edges_1m_mv;
DROP TABLE IF EXISTS $db.rpc_edges_10m_mv;
DROP TABLE IF EXISTS $db.rpc_edges_1h_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_1m_mv TO $db.rpc_edges_1m AS
SELECT toStartOfMinute(ts) AS minute, caller, callee, side, countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors, sumState(toUInt64(status = 'timeout')) AS timeouts,
       sumState(toUInt64(latency_ms > 1000)) AS slow, quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls GROUP BY minute, caller, callee, side;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_10m_mv TO $db.rpc_edges_10m AS
SELECT toDateTime(intDiv(toUInt32(ts), 600) * 600) AS minute, caller, callee, side, countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors, sumState(toUInt64(status = 'timeout')) AS timeouts,
       sumState(toUInt64(latency_ms > 1000)) AS slow, quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls GROUP BY minute, caller, callee, side;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_1h_mv TO $db.rpc_edges_1h AS
SELECT toStartOfHour(ts) AS hour, caller, callee, side, countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors, sumState(toUInt64(status = 'timeout')) AS timeouts,
       sumState(toUInt64(latency_ms > 1000)) AS slow, quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls GROUP BY hour, caller, callee, side;
