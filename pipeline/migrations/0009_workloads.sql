-- Workload names (issue 17): the contract's optional `workload` / `workload_kind` fields as columns
-- right after `cgroup` in every raw table (rows loaded before read as '' = not named), and a
-- per-minute rollup of which workloads exist and which services each one runs, fed by the three raw
-- tables: the service map joins TCP connections (keyed by cgroup) to the services behind them with it.
-- Additive only. Column order stays "ts" + the contract's fields + provenance (transform.py).

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
