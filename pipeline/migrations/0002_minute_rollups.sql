-- Per-minute rollups, fed by materialized views at insert time. Aggregate states (not final
-- numbers) so minutes merge into hours and quantiles stay exact enough: read with countMerge,
-- sumMerge and quantilesTDigestMerge(0.5, 0.95, 0.99).

CREATE TABLE IF NOT EXISTS $db.rpc_calls_1m (
    minute DateTime, callee String, interface String, instance String, caller String,
    version String, side String,
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    latency_sum AggregateFunction(sum, Float64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (callee, minute, interface, instance, caller, version, side);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_calls_1m_mv TO $db.rpc_calls_1m AS
SELECT toStartOfMinute(ts) AS minute, callee, interface, instance, caller, version, side,
       countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors,
       sumState(toUInt64(status = 'timeout')) AS timeouts,
       sumState(latency_ms) AS latency_sum,
       quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls
GROUP BY minute, callee, interface, instance, caller, version, side;

CREATE TABLE IF NOT EXISTS $db.tcp_connections_1m (
    minute DateTime, host String, cgroup String, raddr String, rport UInt16, role String,
    connections AggregateFunction(count),
    tx_bytes AggregateFunction(sum, UInt64),
    rx_bytes AggregateFunction(sum, UInt64),
    duration AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (host, minute, cgroup, raddr, rport, role);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.tcp_connections_1m_mv TO $db.tcp_connections_1m AS
SELECT toStartOfMinute(ts) AS minute, host, cgroup, raddr, rport, role,
       countState() AS connections,
       sumState(tx_bytes) AS tx_bytes,
       sumState(rx_bytes) AS rx_bytes,
       quantilesTDigestState(0.5, 0.95, 0.99)(duration_ms) AS duration
FROM $db.tcp_connections
GROUP BY minute, host, cgroup, raddr, rport, role;
