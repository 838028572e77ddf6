"""The alarm loop: the lease holder judges the last complete minute of every rule's series.

Runs as one asyncio task in every API replica's lifespan; each pass runs in a worker thread (the
store is synchronous). Only the replica holding the lease (weigh/lease.py) evaluates, records
transitions in alarm_history and sends webhooks; the others refresh rules and states from the store
so any replica answers GET /v1/alarms. A new lease term restores the states from the newest
alarm_history row of each rule (no re-fire, nothing forgotten) and delivers the transitions its
predecessor recorded but did not notify (alarm_notifications). Rules come from the rules file
(read-only) and from the API (stored in alarm_rules, re-read every pass). `clock` is an attribute so
tests can move time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from api.alarms import webhook
from api.alarms.rules import DAY_S, RuleSpec, State, Verdict, evaluate, parse_rules_file
from api.queries import alarms as aq
from api.queries.timeseries import Selector, rpc_aggregates
from api.series import COUNT_METRICS, build_series
from api.timerange import Window
from core.settings import Settings
from pipeline.store import Store, StoreError
from weigh.lease import Lease

log = logging.getLogger("svcpulse.alarms")
REDELIVER_S = 3600  # undelivered webhooks are retried for an hour


class RuleConflict(ValueError):
    """A change the API may not make (a rule from the file); the message says why."""


def rule_series(store: Store, rule: RuleSpec, minute: int) -> dict[int, float]:
    """minute start (s) -> value of the rule's metric: the minutes a verdict on `minute` reads."""
    back = rule.baseline_minutes if rule.against == "baseline" and rule.kind.startswith("wave") else 0
    windows = [Window(minute - 60 * back, minute + 60, 60), Window(minute - DAY_S, minute - DAY_S + 60, 60)]
    selector = Selector.of(rule.side, **rule.filters())
    values: dict[int, float] = {}
    for window in windows:
        if rule.metric in COUNT_METRICS:  # no calls at all is a value (0), e.g. for a "min rps" rule
            values.update(dict.fromkeys(window.buckets, 0.0))
        rows = rpc_aggregates(store, selector, (), window, latency=rule.metric.startswith("latency"))
        found = build_series(rows, (), rule.metric, window, 1)
        values.update({t // 1000: v for s in found for t, v in s["points"]})
    return values


class AlarmService:
    def __init__(self, store: Store, settings: Settings, lease: Lease) -> None:
        self.store, self.settings, self.lease = store, settings, lease
        text = Path(settings.alarm_rules_file).read_text() if settings.alarm_rules_file else '{"rules": []}'
        self.file_rules = {r.id: r for r in parse_rules_file(text)}
        self.api_rules: dict[str, RuleSpec] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.evaluated_minute: int | None = None
        self.last_error = ""
        self.clock = time.time
        self._lock = threading.Lock()  # states and rules change in the loop's thread and in handlers
        self._stopping = asyncio.Event()
        self._gone: dict[str, RuleSpec] = {}  # API rules deleted since start, for resolving them
        self._term = 0  # the lease term this replica last evaluated in
        self._due = 0.0  # monotonic time of the next evaluation (holder) or refresh (others)
        with contextlib.suppress(StoreError):  # at once, so the first request already sees stored rules
            self._restore()

    def _restore(self) -> None:
        """API rules and the states they were left in, from the store."""
        rules, states = aq.stored_rules(self.store), aq.last_states(self.store)
        with self._lock:
            fresh = {r.id: r for r in rules if r.id not in self.file_rules}
            self._gone.update({i: r for i, r in self.api_rules.items() if i not in fresh})
            self.api_rules = fresh
            self.states = {rule_id: self._state_of(row) for rule_id, row in states.items()}

    @staticmethod
    def _state_of(row: dict[str, Any]) -> dict[str, Any]:
        return {"state": "firing" if row["state"] == "firing" else "ok", "since_ms": row["ts_ms"],
                "minute_ms": row["minute_ms"], "value": row["value"], "reference": row["reference"],
                "message": row["message"]}

    def rules(self) -> dict[str, tuple[RuleSpec, str]]:
        """id -> (rule, "file" or "api")."""
        with self._lock:
            found = {i: (r, "api") for i, r in self.api_rules.items()}
        return {**found, **{i: (r, "file") for i, r in self.file_rules.items()}}

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.pass_once)
            except StoreError as err:  # an outage is not a crash: try again next pass
                self.last_error = str(err)
                log.warning("alarms not evaluated: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(1.0, self.settings.alarm_interval_s))

    def stop(self) -> None:
        self._stopping.set()

    def pass_once(self) -> None:
        """Holder: evaluate when due (at once in a new term). Others: refresh what they show."""
        if not self.lease.held():
            if time.monotonic() >= self._due:
                self._restore()
                self._due = time.monotonic() + min(self.settings.alarm_interval_s, 5.0)
            return
        if self._term != self.lease.term:
            self._restore()
            self._due, self._term = 0.0, self.lease.term
            log.info("alarm evaluation taken over (lease term %d)", self._term)
        if time.monotonic() >= self._due:
            self._due = time.monotonic() + self.settings.alarm_interval_s
            self._restore()
            self._resolve_deleted()
            self.evaluate_once()
            self.deliver_pending()

    def evaluate_once(self) -> list[Verdict]:
        """Judge the last complete minute of every rule; record and notify the transitions."""
        minute = int(self.clock()) // 60 * 60 - 60
        verdicts = []
        for rule, _ in self.rules().values():
            state: State = self.states.get(rule.id, {}).get("state", "ok")
            verdict = evaluate(rule, rule_series(self.store, rule, minute), minute, state)
            self._apply(rule, verdict)
            verdicts.append(verdict)
        self.evaluated_minute, self.last_error = minute, ""
        return verdicts

    def _apply(self, rule: RuleSpec, verdict: Verdict) -> None:
        with self._lock:
            previous = self.states.get(rule.id, {})
            since = previous.get("since_ms")
            if verdict.transition:
                since = aq.record_transition(self.store, rule, verdict)
            self.states[rule.id] = {"state": verdict.state, "since_ms": since, "minute_ms": verdict.minute * 1000,
                                    "value": verdict.value, "reference": verdict.reference,
                                    "message": verdict.message}
        if verdict.transition:
            self._notify(rule.id, since or 0, webhook.payload(rule, verdict, since or 0))

    def _notify(self, rule_id: str, at_ms: int, body: dict[str, Any]) -> None:
        """Send the webhook and record the delivery (a failed one is retried by deliver_pending)."""
        url = self.settings.alarm_webhook_url
        if not url or webhook.send(url, body, self.settings.alarm_webhook_timeout_s):
            aq.record_delivery(self.store, rule_id, at_ms, body["state"])

    def deliver_pending(self) -> None:
        """Transitions recorded but not delivered (the receiver was down, or the last holder died)."""
        since_ms = int(self.clock() * 1000) - REDELIVER_S * 1000
        for row in aq.undelivered(self.store, since_ms):
            rule = self.rules().get(row["rule_id"], (None, ""))[0]
            self._notify(row["rule_id"], row["ts_ms"], webhook.payload_of_row(row, rule))

    def _resolve_deleted(self) -> None:
        """A rule deleted while firing is resolved (recorded and notified) so receivers can close it."""
        current = self.rules()
        for rule_id, state in list(self.states.items()):
            if rule_id in current or state.get("state") != "firing":
                continue
            rule = self._gone.get(rule_id) or RuleSpec(id=rule_id, metric="rps", kind="max", threshold=0.0,
                                                       description="a rule deleted before this replica saw it")
            minute = int(self.clock()) // 60 * 60 - 60
            self._apply(rule, Verdict(minute, state.get("value"), state.get("reference"), None, "ok",
                                      "resolved", "rule deleted"))
            with self._lock:
                self.states.pop(rule_id, None)

    def put_rule(self, rule: RuleSpec, who: str) -> None:
        if rule.id in self.file_rules:
            raise RuleConflict(f"rule {rule.id!r} comes from the rules file; change it there (or use another id)")
        aq.write_rule(self.store, rule.id, rule, who)
        with self._lock:
            self.api_rules[rule.id] = rule

    def delete_rule(self, rule_id: str, who: str) -> RuleSpec:
        """Remove an API rule; the lease holder resolves it if it was firing."""
        if rule_id in self.file_rules:
            raise RuleConflict(f"rule {rule_id!r} comes from the rules file; remove it there")
        with self._lock:
            rule = self.api_rules.get(rule_id)
        if rule is None:
            raise KeyError(f"no alarm rule {rule_id!r}")
        aq.write_rule(self.store, rule_id, None, who)
        with self._lock:
            self.api_rules.pop(rule_id, None)
        return rule
