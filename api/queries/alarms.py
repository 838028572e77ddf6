"""SQL of the alarms: API-managed rules (append-only, newest row per id wins) and the transition history."""

from __future__ import annotations

from typing import Any

from api.alarms.rules import RuleSpec, Verdict
from api.queries.registry import stamp_ms
from pipeline.store import Store

RULE_COLUMNS = ("id", "spec", "deleted", "changed_ms", "changed_by")
HISTORY_COLUMNS = ("ts", "ts_ms", "rule_id", "state", "minute_ms", "value", "reference", "threshold", "message")


def stored_rules(store: Store) -> list[RuleSpec]:
    rows = store.query("SELECT * FROM (SELECT id, spec, deleted FROM alarm_rules ORDER BY changed_ms DESC "
                       "LIMIT 1 BY id) WHERE deleted = 0 ORDER BY id")
    return [RuleSpec.model_validate_json(row["spec"]) for row in rows]


def write_rule(store: Store, rule_id: str, spec: RuleSpec | None, who: str) -> None:
    """Store a rule (or, spec=None, its deletion)."""
    row = [rule_id, spec.model_dump_json() if spec else "", 0 if spec else 1, stamp_ms(), who]
    store.insert("alarm_rules", RULE_COLUMNS, [[value] for value in row])


def record_transition(store: Store, rule: RuleSpec, verdict: Verdict) -> int:
    """One history row: the rule's new state, what was measured and why; returns its time (ms)."""
    now = stamp_ms()
    row = [now // 1000, now, rule.id, "firing" if verdict.transition == "fired" else "resolved",
           verdict.minute * 1000, verdict.value, verdict.reference, rule.threshold, verdict.message]
    store.insert("alarm_history", HISTORY_COLUMNS, [[value] for value in row])
    return now


def undelivered(store: Store, since_ms: int) -> list[dict[str, Any]]:
    """Transitions since since_ms whose webhook was not recorded as sent, oldest first."""
    return store.query(
        "SELECT ts_ms, rule_id, state, minute_ms, value, reference, threshold, message FROM alarm_history "
        "WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND (rule_id, ts_ms) NOT IN "
        "(SELECT rule_id, at_ms FROM alarm_notifications WHERE at_ms >= %(since_ms)s) ORDER BY ts_ms",
        {"since_s": since_ms // 1000, "since_ms": since_ms})


def record_delivery(store: Store, rule_id: str, at_ms: int, state: str) -> None:
    now = stamp_ms()
    row = [now // 1000, rule_id, at_ms, state, now]
    store.insert("alarm_notifications", ("ts", "rule_id", "at_ms", "state", "sent_ms"), [[v] for v in row])


def last_states(store: Store) -> dict[str, dict[str, Any]]:
    """rule id -> its newest history row (the state it was left in)."""
    rows = store.query("SELECT rule_id, state, ts_ms, minute_ms, value, reference, message FROM alarm_history "
                       "ORDER BY ts_ms DESC LIMIT 1 BY rule_id")
    return {row["rule_id"]: row for row in rows}


def history(store: Store, rule_id: str | None, from_ms: int, to_ms: int, limit: int) -> list[dict[str, Any]]:
    where = "AND rule_id = %(rule_id)s" if rule_id else ""
    return store.query(
        "SELECT ts_ms, rule_id, state, minute_ms, value, reference, threshold, message FROM alarm_history "
        f"WHERE ts >= toDateTime(%(from_s)s) AND ts_ms >= %(from_ms)s AND ts_ms < %(to_ms)s {where} "
        "ORDER BY ts_ms DESC LIMIT %(limit)s",
        {"rule_id": rule_id, "from_s": from_ms // 1000, "from_ms": from_ms, "to_ms": to_ms, "limit": limit},
    )

