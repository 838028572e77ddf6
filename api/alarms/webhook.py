"""The webhook notifier: one JSON POST per transition (fired or resolved) to the configured URL.

Only the lease holder sends (api/alarms/service.py). Each delivery is recorded in
alarm_notifications; a failed one (receiver down) is retried every pass for an hour, and a holder
that takes over sends what its predecessor recorded but did not deliver. The payload's `id` is the
same on every attempt, for receivers that deduplicate. The payload is described in docs/alarms.md.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from api.alarms.rules import RuleSpec, Verdict

log = logging.getLogger("svcpulse.alarms")


def payload(rule: RuleSpec, verdict: Verdict, at_ms: int) -> dict[str, Any]:
    """`id` (rule and transition time) is the same on every delivery of one transition: receivers may
    deduplicate on it (a holder that dies between sending and recording a delivery sends it again)."""
    return {"id": f"{rule.id}@{at_ms}", "rule_id": rule.id,
            "state": "firing" if verdict.transition == "fired" else "resolved",
            "at_ms": at_ms, "minute_ms": verdict.minute * 1000, "metric": rule.metric, "kind": rule.kind,
            "against": rule.against if rule.kind.startswith("wave") else None, "threshold": rule.threshold,
            "value": verdict.value, "reference": verdict.reference,
            "labels": {k: v for k, v in rule.filters().items() if v is not None},
            "message": verdict.message, "description": rule.description}


def payload_of_row(row: dict[str, Any], rule: RuleSpec | None) -> dict[str, Any]:
    """The payload of a transition read back from alarm_history (a delivery retried later)."""
    verdict = Verdict(row["minute_ms"] // 1000, row["value"], row["reference"], None,
                      "firing" if row["state"] == "firing" else "ok",
                      "fired" if row["state"] == "firing" else "resolved", row["message"])
    stand_in = RuleSpec(id=row["rule_id"], metric="rps", kind="max", threshold=row["threshold"])
    return payload(rule or stand_in, verdict, row["ts_ms"])


def send(url: str, body: dict[str, Any], timeout_s: float) -> bool:
    """POST the body; False (and a warning in the log) when the receiver is down or refuses it."""
    try:
        httpx.post(url, json=body, timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as err:
        log.warning("alarm webhook %s failed for %s: %s", url, body["rule_id"], err)
        return False
    return True
