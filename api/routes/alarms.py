"""Alarms: current states, the firing/resolved history, and rule management (operator role)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from api.alarms.rules import RULE_ID, RuleSpec
from api.alarms.service import RuleConflict
from api.auth import Operator, Reader
from api.deps import AlarmsDep, StoreDep
from api.queries import alarms as aq
from api.queries import registry as reg
from api.routes.audit import WhyQuery
from api.routes.params import FromMs, ToMs, window_of

router = APIRouter(prefix="/v1/alarms", tags=["alarms"])

RuleId = Annotated[str, Path(pattern=RULE_ID, description="the rule's id")]


class RuleIn(RuleSpec):
    why: str = Field(min_length=1, max_length=500, description="why the rule is added; kept in the audit log")


class AlarmState(BaseModel):
    rule: RuleSpec
    source: Literal["file", "api"]
    state: Literal["ok", "firing", "pending"] = Field(description="pending = not evaluated yet")
    since_ms: int | None = Field(description="when it last fired or resolved")
    minute_ms: int | None = Field(description="the minute last judged")
    value: float | None
    reference: float | None = Field(description="yesterday's value or the baseline mean (wave kinds)")
    message: str


class Alarms(BaseModel):
    evaluated_minute_ms: int | None
    last_error: str
    alarms: list[AlarmState]


class Transition(BaseModel):
    ts_ms: int
    rule_id: str
    state: Literal["firing", "resolved"]
    minute_ms: int
    value: float | None
    reference: float | None
    threshold: float
    message: str


class History(BaseModel):
    events: list[Transition]


class RuleOut(BaseModel):
    rule: RuleSpec
    source: Literal["file", "api"]


@router.get("", response_model=Alarms, summary="Every rule with its current state (firing first)")
def current(_: Reader, alarms: AlarmsDep) -> Alarms:
    rows = []
    for rule_id, (rule, source) in sorted(alarms.rules().items()):
        state: dict[str, Any] = alarms.states.get(rule_id) or {"state": "pending", "since_ms": None,
                                                                "minute_ms": None, "value": None,
                                                                "reference": None, "message": ""}
        rows.append(AlarmState(rule=rule, source=source, **state))
    rows.sort(key=lambda a: a.state != "firing")
    minute = alarms.evaluated_minute
    return Alarms(evaluated_minute_ms=None if minute is None else minute * 1000, last_error=alarms.last_error,
                  alarms=rows)


@router.get("/history", response_model=History, summary="Firing and resolved transitions, newest first")
def transitions(_: Reader, store: StoreDep, rule_id: Annotated[str | None, Query(max_length=100)] = None,
                from_ms: FromMs = None, to_ms: ToMs = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> History:
    window = window_of(from_ms, to_ms if to_ms is not None else int(time.time() * 1000) + 1, bucketed=False)
    return History(events=aq.history(store, rule_id, window.from_s * 1000, window.to_s * 1000, limit))


@router.get("/rules", response_model=list[RuleOut], summary="All rules (from the file and the API)")
def rules(_: Reader, alarms: AlarmsDep) -> list[RuleOut]:
    return [RuleOut(rule=rule, source=source) for _, (rule, source) in sorted(alarms.rules().items())]


@router.post("/rules", response_model=RuleOut, status_code=201, summary="Add or replace a rule (operator)",
             responses={409: {"description": "the id belongs to a rule from the rules file"}})
def put_rule(body: RuleIn, who: Operator, alarms: AlarmsDep, store: StoreDep) -> RuleOut:
    rule = RuleSpec.model_validate(body.model_dump(exclude={"why"}))
    try:
        alarms.put_rule(rule, who.name)
    except RuleConflict as err:
        raise HTTPException(409, str(err)) from err
    reg.record_audit(store, user=who.name, role=who.role, action="alarm_rule.put", service=rule.service or "",
                     target=rule.id, detail=rule.model_dump(), why=body.why)
    return RuleOut(rule=rule, source="api")


@router.delete("/rules/{rule_id}", response_model=RuleOut, summary="Remove a rule added through the API "
               "(operator); a firing alarm is resolved", responses={404: {}, 409: {}})
def delete_rule(rule_id: RuleId, why: WhyQuery, who: Operator, alarms: AlarmsDep, store: StoreDep) -> RuleOut:
    try:
        rule = alarms.delete_rule(rule_id, who.name)
    except RuleConflict as err:
        raise HTTPException(409, str(err)) from err
    except KeyError as err:
        raise HTTPException(404, str(err.args[0])) from err
    reg.record_audit(store, user=who.name, role=who.role, action="alarm_rule.delete", service=rule.service or "",
                     target=rule_id, detail={}, why=why)
    return RuleOut(rule=rule, source="api")
