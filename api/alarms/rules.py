"""Alarm rules and their evaluation (pure: a rule, a per-minute series and the previous state in, a
verdict out). docs/alarms.md describes the kinds and the rules file.

Kinds (MSEC's four, on any series of the query API):
- max: the minute's value is above the threshold;      min: below it.
- wave_abs: |value - reference| is above the threshold;
- wave_pct: |value - reference| / |reference| * 100 is above the threshold (not judged when reference = 0).
The reference is the same minute yesterday (MSEC) or, with against = "baseline", the mean of the
previous `baseline_minutes` minutes. A minute without a value (no calls, for ratios and latencies)
leaves the state as it was: missing data neither fires nor resolves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from api.queries.timeseries import Side
from api.series import Metric

Kind = Literal["max", "min", "wave_abs", "wave_pct"]
State = Literal["ok", "firing"]
Transition = Literal["fired", "resolved"]
DAY_S = 86_400
RULE_ID = r"^[A-Za-z0-9_.\-]{1,100}$"


class RuleSpec(BaseModel):
    """One rule: which series (metric + filters), which check, and the threshold."""

    id: str = Field(pattern=RULE_ID, examples=["cart-p99"])
    metric: Metric = Field(examples=["latency_p99"])
    kind: Kind = Field(examples=["max"])
    threshold: float = Field(examples=[250.0], description="ms, rps, a 0-1 ratio or % (wave_pct), by metric")
    service: str | None = Field(None, max_length=128, examples=["shop.cart"])
    interface: str | None = Field(None, max_length=300)
    instance: str | None = Field(None, max_length=300)
    caller: str | None = Field(None, max_length=128)
    version: str | None = Field(None, max_length=128)
    against: Literal["yesterday", "baseline"] = Field(
        "yesterday", description="wave kinds: the same minute yesterday, or the mean of the previous minutes")
    baseline_minutes: int = Field(30, ge=1, le=1_440, description="minutes averaged when against = baseline")
    side: Side = Field("server", description="whose measurement, as in /v1/series")
    description: str = Field("", max_length=500)

    def filters(self) -> dict[str, str | None]:
        return {"service": self.service, "interface": self.interface, "instance": self.instance,
                "caller": self.caller, "version": self.version}


@dataclass(frozen=True)
class Verdict:
    minute: int  # epoch s of the minute judged
    value: float | None
    reference: float | None
    breached: bool | None  # None: not judged (no value, or no reference for a wave)
    state: State
    transition: Transition | None
    message: str


def reference(rule: RuleSpec, values: Mapping[int, float], minute: int) -> float | None:
    """What a wave compares with: yesterday's same minute, or the mean of the previous minutes."""
    if rule.against == "yesterday":
        return values.get(minute - DAY_S)
    previous = [values[t] for t in range(minute - 60 * rule.baseline_minutes, minute, 60) if t in values]
    return sum(previous) / len(previous) if previous else None


def breached(rule: RuleSpec, value: float, ref: float | None) -> bool | None:
    if rule.kind == "max":
        return value > rule.threshold
    if rule.kind == "min":
        return value < rule.threshold
    if ref is None or (rule.kind == "wave_pct" and ref == 0):
        return None
    change = abs(value - ref)
    return (change if rule.kind == "wave_abs" else change / abs(ref) * 100) > rule.threshold


def describe(rule: RuleSpec, value: float | None, ref: float | None) -> str:
    where = ",".join(f"{k}={v}" for k, v in rule.filters().items() if v is not None) or "all services"
    if rule.kind in ("max", "min"):
        return f"{rule.metric} of {where} = {value} ({rule.kind} {rule.threshold:g})"
    unit = "%" if rule.kind == "wave_pct" else ""
    return (f"{rule.metric} of {where} = {value} against {rule.against} {ref} "
            f"(wave limit {rule.threshold:g}{unit})")


def evaluate(rule: RuleSpec, values: Mapping[int, float], minute: int, state: State) -> Verdict:
    """Judge `minute` of the series `values` (minute start s -> value) given the rule's current state."""
    value = values.get(minute)
    ref = reference(rule, values, minute) if rule.kind.startswith("wave") else None
    verdict = None if value is None else breached(rule, value, ref)
    new_state: State = state if verdict is None else ("firing" if verdict else "ok")
    transition: Transition | None = None
    if new_state != state:
        transition = "fired" if new_state == "firing" else "resolved"
    return Verdict(minute, value, ref, verdict, new_state, transition, describe(rule, value, ref))


def parse_rules_file(text: str) -> list[RuleSpec]:
    """{"rules": [{...}, ...]} -> rules; a bad rule is a ValueError naming its position and field."""
    doc = json.loads(text)
    rules = []
    for index, entry in enumerate(doc.get("rules", [])):
        try:
            rules.append(RuleSpec.model_validate(entry))
        except ValueError as err:
            raise ValueError(f"alarm rule #{index + 1} ({entry.get('id', '?')!r}): {err}") from err
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise ValueError(f"alarm rules file: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return rules
