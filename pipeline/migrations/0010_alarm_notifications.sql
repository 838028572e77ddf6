-- Webhook deliveries of alarm transitions (alarm_history, 0005). Only the lease holder evaluates alarms
-- (weigh/lease.py); it records each transition, sends the webhook, then records the delivery here. A
-- holder that takes over sends what its predecessor recorded but did not deliver, and nothing twice.
-- Partitioned by month and kept, like alarm_history.

CREATE TABLE IF NOT EXISTS $db.alarm_notifications (
    ts DateTime, rule_id String, at_ms UInt64, state String, sent_ms UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (rule_id, at_ms);
