-- Per-hour RPC rollup, fed from the raw table like the per-minute one. Long ranges (hours to a
-- month) merge ~60x fewer aggregate states: the query layer reads whole hours here and only the
-- partial hours at the edges of a range from rpc_calls_1m.

CREATE TABLE IF NOT EXISTS $db.rpc_calls_1h (
    hour DateTime, callee String, interface String, instance String, caller String,
    version String, side String,
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    latency_sum AggregateFunction(sum, Float64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(hour)
  ORDER BY (callee, hour, interface, instance, caller, version, side);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_calls_1h_mv TO $db.rpc_calls_1h AS
SELECT toStartOfHour(ts) AS hour, callee, interface, instance, caller, version, side,
       countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors,
       sumState(toUInt64(status = 'timeout')) AS timeouts,
       sumState(latency_ms) AS latency_sum,
       quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls
GROUP BY hour, callee, interface, instance, caller, version, side;
