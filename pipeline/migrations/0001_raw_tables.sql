-- Raw event tables: one row per contract event, partitioned by day (retention drops whole days),
-- every row carrying where it came from in Kafka (topic, partition, offset, message time).
-- Column order = "ts" + the contract's fields + provenance (pipeline/transform.py relies on it).

CREATE TABLE IF NOT EXISTS $db.tcp_connections (
    ts DateTime, v UInt8, ts_ms UInt64,
    host String, pid UInt32, comm String, cgroup String, family UInt8,
    laddr String, lport UInt16, raddr String, rport UInt16, role String,
    tx_bytes UInt64, rx_bytes UInt64, duration_ms Float64,
    _topic String, _partition UInt32, _offset UInt64, _kafka_ts_ms UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (host, ts);

CREATE TABLE IF NOT EXISTS $db.rpc_calls (
    ts DateTime, v UInt8, ts_ms UInt64,
    caller String, callee String, interface String, instance String, side String,
    latency_ms Float64, status String, code String, version String, host String, cgroup String,
    _topic String, _partition UInt32, _offset UInt64, _kafka_ts_ms UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (callee, ts);

CREATE TABLE IF NOT EXISTS $db.instance_load (
    ts DateTime, v UInt8, ts_ms UInt64,
    host String, cgroup String, instance String,
    cpu_cores Float64, cpu_limit_cores Float64, mem_bytes UInt64, mem_limit_bytes UInt64,
    _topic String, _partition UInt32, _offset UInt64, _kafka_ts_ms UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (host, cgroup, ts);
