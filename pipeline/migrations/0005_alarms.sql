-- Alarm rules added through the API (file rules are not stored) and every firing/resolved transition.
-- Rules are append-only rows read newest-first per id (like the registry, 0003): right before and after
-- ReplacingMergeTree merges, on 18.16 and current ClickHouse. The newest history row of a rule is its
-- state, so a restarted API neither re-fires nor forgets what is firing.

CREATE TABLE IF NOT EXISTS $db.alarm_rules (
    id String, spec String, deleted UInt8, changed_ms UInt64, changed_by String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY id;

CREATE TABLE IF NOT EXISTS $db.alarm_history (
    ts DateTime, ts_ms UInt64, rule_id String, state String, minute_ms UInt64,
    value Nullable(Float64), reference Nullable(Float64), threshold Float64, message String
) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (rule_id, ts);
