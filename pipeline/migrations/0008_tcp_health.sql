-- Connection health (issue 11): the tcp contract's optional fields as columns, a per-minute health
-- rollup per (remote address:port, caller cgroup), and each registered service's routing signal.
-- Additive only: columns with defaults (rows loaded before read as outcome '' = unknown), a new
-- table and view. Column order stays "ts" + the contract's fields + provenance (transform.py).

ALTER TABLE $db.tcp_connections
    ADD COLUMN outcome String DEFAULT '' AFTER duration_ms,
    ADD COLUMN connect_ms Float64 DEFAULT 0 AFTER outcome,
    ADD COLUMN retransmits UInt64 DEFAULT 0 AFTER connect_ms,
    ADD COLUMN srtt_us UInt32 DEFAULT 0 AFTER retransmits,
    ADD COLUMN resets_in UInt64 DEFAULT 0 AFTER srtt_us,
    ADD COLUMN resets_out UInt64 DEFAULT 0 AFTER resets_in;

-- Client-side connections only: the caller sees refusals and unanswered SYNs, which never reach
-- the server. Quantiles skip zeros (no handshake / no RTT sample). Read with countMerge,
-- sumMerge and quantilesTDigestIfMerge(0.5, 0.99).
CREATE TABLE IF NOT EXISTS $db.tcp_health_1m (
    minute DateTime, raddr String, rport UInt16, cgroup String,
    attempts AggregateFunction(count),
    ok AggregateFunction(sum, UInt64),
    refused AggregateFunction(sum, UInt64),
    timeouts AggregateFunction(sum, UInt64),
    unreachable AggregateFunction(sum, UInt64),
    reset AggregateFunction(sum, UInt64),
    aborted AggregateFunction(sum, UInt64),
    retransmits AggregateFunction(sum, UInt64),
    resets_in AggregateFunction(sum, UInt64),
    resets_out AggregateFunction(sum, UInt64),
    connect_ms AggregateFunction(quantilesTDigestIf(0.5, 0.99), Float64, UInt8),
    srtt_us AggregateFunction(quantilesTDigestIf(0.5, 0.99), Float64, UInt8)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute)
  ORDER BY (raddr, rport, minute, cgroup);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.tcp_health_1m_mv TO $db.tcp_health_1m AS
SELECT toStartOfMinute(ts) AS minute, raddr, rport, cgroup,
       countState() AS attempts,
       sumState(toUInt64(outcome = 'ok')) AS ok,
       sumState(toUInt64(outcome = 'refused')) AS refused,
       sumState(toUInt64(outcome = 'timeout')) AS timeouts,
       sumState(toUInt64(outcome = 'unreachable')) AS unreachable,
       sumState(toUInt64(outcome = 'reset')) AS reset,
       sumState(toUInt64(outcome = 'aborted')) AS aborted,
       sumState(retransmits) AS retransmits,
       sumState(resets_in) AS resets_in,
       sumState(resets_out) AS resets_out,
       quantilesTDigestIfState(0.5, 0.99)(connect_ms, toUInt8(connect_ms > 0)) AS connect_ms,
       quantilesTDigestIfState(0.5, 0.99)(toFloat64(srtt_us), toUInt8(srtt_us > 0)) AS srtt_us
FROM $db.tcp_connections
WHERE role = 'client' AND outcome != ''
GROUP BY minute, raddr, rport, cgroup;

-- Which signal steers a service's weights: 'rpc', 'tcp' or 'auto' (rpc where calls exist, TCP
-- health otherwise, and TCP may only lower an rpc-judged weight).
ALTER TABLE $db.registry_services ADD COLUMN signal String DEFAULT 'auto' AFTER description;
