-- Weight feed history, the registry, operator overrides, gray releases and the audit log.
-- Mutable things (registry, overrides, releases, held roles) are append-only rows with a version
-- column (changed_ms): readers take the latest row per key with argMax, so they are correct before
-- and after ReplacingMergeTree merges, on 18.16 and current ClickHouse, without ALTER mutations.

CREATE TABLE IF NOT EXISTS $db.weight_history (
    ts DateTime, ts_ms UInt64, service String, revision String, mode String,
    instance String, weight UInt32, state String, reason String,
    success_rate Nullable(Float64), latency_ms_p50 Nullable(Float64), latency_ms_p99 Nullable(Float64),
    rps Float64, version String
) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (service, instance, ts);

CREATE TABLE IF NOT EXISTS $db.registry_services (
    service String, kind String, description String, source String, deleted UInt8,
    changed_ms UInt64, changed_by String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY service;

CREATE TABLE IF NOT EXISTS $db.registry_instances (
    service String, instance String, static_weight UInt32, version String, enabled UInt8,
    source String, deleted UInt8, changed_ms UInt64, changed_by String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY (service, instance);

CREATE TABLE IF NOT EXISTS $db.weight_overrides (
    service String, instance String, drained UInt8, pinned_weight Int32, deleted UInt8,
    changed_ms UInt64, changed_by String, why String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY (service, instance);

CREATE TABLE IF NOT EXISTS $db.releases (
    service String, canary_version String, percent Float64, state String, reason String,
    error_margin Float64, p99_margin Float64, changed_ms UInt64, changed_by String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY service;

CREATE TABLE IF NOT EXISTS $db.user_roles (
    user String, role String, changed_ms UInt64, changed_by String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY user;

CREATE TABLE IF NOT EXISTS $db.audit_log (
    ts DateTime, ts_ms UInt64, user String, role String, action String, service String,
    target String, detail String, why String
) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (ts, service);
