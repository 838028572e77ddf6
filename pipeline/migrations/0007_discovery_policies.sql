-- Discovery policies (issue 9): which observed instances telemetry may add to a service's feed.
-- Without a row here, only registry entries made through the API are routable. Append-only rows read
-- newest-first per service (as the registry, 0003), so the same SQL runs on 18.16 and current ClickHouse.

CREATE TABLE IF NOT EXISTS $db.discovery_policies (
    service String, cidrs Array(String), ports Array(UInt16), server_side_only UInt8, deleted UInt8,
    changed_ms UInt64, changed_by String, why String
) ENGINE = ReplacingMergeTree(changed_ms) ORDER BY service;
