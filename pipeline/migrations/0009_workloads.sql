-- Workloads and the service map (issue 17): the contract's optional `workload` / `workload_kind`
-- fields as columns right after `cgroup` in every raw table (rows loaded before read as '' = not
-- named); a per-minute rollup of which workloads exist and which services each one runs, fed by the
-- three raw tables (the map joins TCP connections, keyed by cgroup, to the services behind them with
-- it); and the service graph's call rollups. Additive only. Column order stays "ts" + the contract's
-- fields + provenance (transform.py).

ALTER TABLE $db.tcp_connections
    ADD COLUMN workload String DEFAULT '' AFTER cgroup,
    ADD COLUMN workload_kind String DEFAULT '' AFTER workload;

ALTER TABLE $db.rpc_calls
    ADD COLUMN workload String DEFAULT '' AFTER cgroup,
    ADD COLUMN workload_kind String DEFAULT '' AFTER workload;

ALTER TABLE $db.instance_load
    ADD COLUMN workload String DEFAULT '' AFTER cgroup,
    ADD COLUMN workload_kind String DEFAULT '' AFTER workload;

-- service = the svcpulse service that measured a call from this cgroup (the callee on the server side,
-- the caller on the client side); '' for rows from connections and load samples. source = rpc, tcp or
-- load. Read with countMerge(events).
CREATE TABLE IF NOT EXISTS $db.workloads_1m (
    minute DateTime, cgroup String, workload String, workload_kind String, service String, source String,
    host String,
    events AggregateFunction(count)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (minute, cgroup, workload, workload_kind, service, source, host);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.workloads_1m_rpc_mv TO $db.workloads_1m AS
SELECT toStartOfMinute(ts) AS minute, cgroup, workload, workload_kind,
       if(side = 'server', callee, caller) AS service, 'rpc' AS source, host, countState() AS events
FROM $db.rpc_calls
WHERE workload != ''
GROUP BY minute, cgroup, workload, workload_kind, service, source, host;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.workloads_1m_tcp_mv TO $db.workloads_1m AS
SELECT toStartOfMinute(ts) AS minute, cgroup, workload, workload_kind, '' AS service, 'tcp' AS source, host,
       countState() AS events
FROM $db.tcp_connections
WHERE workload != ''
GROUP BY minute, cgroup, workload, workload_kind, service, source, host;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.workloads_1m_load_mv TO $db.workloads_1m AS
SELECT toStartOfMinute(ts) AS minute, cgroup, workload, workload_kind, '' AS service, 'load' AS source, host,
       countState() AS events
FROM $db.instance_load
WHERE workload != ''
GROUP BY minute, cgroup, workload, workload_kind, service, source, host;

-- The service graph's own rollups, keyed by minute first (a map over the last hour reads the last
-- hour only) and without the interface and version dimensions of rpc_calls_1m/1h: calls per
-- (caller, callee, side) with their latency digest; per callee instance only counts (a sum merges far
-- cheaper than a digest: the instance dimension multiplies rows by the fleet size); callers' TCP
-- connections per (cgroup, remote endpoint), client side, as tcp_health_1m counts them. Minutes, ten
-- minutes and hours, as rpc_calls_1m/1h (api/queries/map.py, bench/map.py).
-- rpc_edges_*: read with countMerge, sumMerge, quantilesTDigestMerge(0.5, 0.99); the others with sum().
CREATE TABLE IF NOT EXISTS $db.rpc_edges_1m (
    minute DateTime, caller String, callee String, side String,
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (minute, callee, caller, side);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_1m_mv TO $db.rpc_edges_1m AS
SELECT toStartOfMinute(ts) AS minute, caller, callee, side,
       countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors,
       sumState(toUInt64(status = 'timeout')) AS timeouts,
       quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side;

CREATE TABLE IF NOT EXISTS $db.rpc_edges_1h (
    hour DateTime, caller String, callee String, side String,
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(hour)
  ORDER BY (hour, callee, caller, side);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_1h_mv TO $db.rpc_edges_1h AS
SELECT toStartOfHour(ts) AS hour, caller, callee, side,
       countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors,
       sumState(toUInt64(status = 'timeout')) AS timeouts,
       quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls
GROUP BY hour, caller, callee, side;

CREATE TABLE IF NOT EXISTS $db.rpc_edge_instances_1m (
    minute DateTime, caller String, callee String, side String, instance String, calls UInt64, failures UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, callee, caller, side, instance);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_instances_1m_mv TO $db.rpc_edge_instances_1m AS
SELECT toStartOfMinute(ts) AS minute, caller, callee, side, instance, count() AS calls,
       sum(toUInt64(status != 'ok')) AS failures
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side, instance;

CREATE TABLE IF NOT EXISTS $db.rpc_edge_instances_1h (
    hour DateTime, caller String, callee String, side String, instance String, calls UInt64, failures UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, callee, caller, side, instance);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_instances_1h_mv TO $db.rpc_edge_instances_1h AS
SELECT toStartOfHour(ts) AS hour, caller, callee, side, instance, count() AS calls,
       sum(toUInt64(status != 'ok')) AS failures
FROM $db.rpc_calls
GROUP BY hour, caller, callee, side, instance;

CREATE TABLE IF NOT EXISTS $db.tcp_edges_1m (
    minute DateTime, cgroup String, raddr String, rport UInt16,
    attempts UInt64, ok UInt64, retransmits UInt64, resets UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, cgroup, raddr, rport);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.tcp_edges_1m_mv TO $db.tcp_edges_1m AS
SELECT toStartOfMinute(ts) AS minute, cgroup, raddr, rport, count() AS attempts,
       sum(toUInt64(outcome = 'ok')) AS ok, sum(retransmits) AS retransmits, sum(resets_in + resets_out) AS resets
FROM $db.tcp_connections
WHERE role = 'client' AND outcome != ''
GROUP BY minute, cgroup, raddr, rport;

CREATE TABLE IF NOT EXISTS $db.tcp_edges_1h (
    hour DateTime, cgroup String, raddr String, rport UInt16,
    attempts UInt64, ok UInt64, retransmits UInt64, resets UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, cgroup, raddr, rport);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.tcp_edges_1h_mv TO $db.tcp_edges_1h AS
SELECT toStartOfHour(ts) AS hour, cgroup, raddr, rport, count() AS attempts,
       sum(toUInt64(outcome = 'ok')) AS ok, sum(retransmits) AS retransmits, sum(resets_in + resets_out) AS resets
FROM $db.tcp_connections
WHERE role = 'client' AND outcome != ''
GROUP BY hour, cgroup, raddr, rport;

-- Ten-minute buckets: a range of an hour or more reads whole ten minutes from here and only its edges
-- from the minutes (ten times fewer rows and digests to merge than minutes alone).
CREATE TABLE IF NOT EXISTS $db.rpc_edges_10m (
    minute DateTime, caller String, callee String, side String,
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.99), Float64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (minute, callee, caller, side);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edges_10m_mv TO $db.rpc_edges_10m AS
SELECT toDateTime(intDiv(toUInt32(ts), 600) * 600) AS minute, caller, callee, side,
       countState() AS calls,
       sumState(toUInt64(status = 'error')) AS errors,
       sumState(toUInt64(status = 'timeout')) AS timeouts,
       quantilesTDigestState(0.5, 0.99)(latency_ms) AS latency
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side;

CREATE TABLE IF NOT EXISTS $db.rpc_edge_instances_10m (
    minute DateTime, caller String, callee String, side String, instance String, calls UInt64, failures UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, callee, caller, side, instance);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.rpc_edge_instances_10m_mv TO $db.rpc_edge_instances_10m AS
SELECT toDateTime(intDiv(toUInt32(ts), 600) * 600) AS minute, caller, callee, side, instance, count() AS calls,
       sum(toUInt64(status != 'ok')) AS failures
FROM $db.rpc_calls
GROUP BY minute, caller, callee, side, instance;

CREATE TABLE IF NOT EXISTS $db.tcp_edges_10m (
    minute DateTime, cgroup String, raddr String, rport UInt16,
    attempts UInt64, ok UInt64, retransmits UInt64, resets UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, cgroup, raddr, rport);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.tcp_edges_10m_mv TO $db.tcp_edges_10m AS
SELECT toDateTime(intDiv(toUInt32(ts), 600) * 600) AS minute, cgroup, raddr, rport, count() AS attempts,
       sum(toUInt64(outcome = 'ok')) AS ok, sum(retransmits) AS retransmits, sum(resets_in + resets_out) AS resets
FROM $db.tcp_connections
WHERE role = 'client' AND outcome != ''
GROUP BY minute, cgroup, raddr, rport;
