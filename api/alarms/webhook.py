"""The webhook notifier: one JSON POST per transition (fired or resolved) to the configured URL.

Delivery is at most once (one attempt, logged on failure): the alarm history in ClickHouse is the
record; the webhook is the nudge. The payload is described in docs/alarms.md.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from api.alarms.rules import RuleSpec, Verdict

log = logging.getLogger("svcpulse.alarms")


def payload(rule: RuleSpec, verdict: Verdict, at_ms: int) -> dict[str, Any]:
    return {"rule_id": rule.id, "state": "firing" if verdict.transition == "fired" else "resolved",
            "at_ms": at_ms, "minute_ms": verdict.minute * 1000, "metric": rule.metric, "kind": rule.kind,
            "against": rule.against if rule.kind.startswith("wave") else None, "threshold": rule.threshold,
            "value": verdict.value, "reference": verdict.reference,
            "labels": {k: v for k, v in rule.filters().items() if v is not None},
            "message": verdict.message, "description": rule.description}


def send(url: str, body: dict[str, Any], timeout_s: float) -> bool:
    """POST the body; False (and a warning in the log) when the receiver is down or refuses it."""
    try:
        httpx.post(url, json=body, timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as err:
        log.warning("alarm webhook %s failed for %s: %s", url, body["rule_id"], err)
        return False
    return True
