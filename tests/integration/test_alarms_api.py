"""Alarms end to end on ClickHouse 18.16: a rule from the file and one from the API each fire and resolve
once as the evaluated minute moves over known data; a real HTTP receiver gets each webhook; history,
states, roles, and a restart that keeps API rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.helpers import wait_for, webhook_receiver
from tests.integration.query_data import insert_direct, minute_t, rpc
from tests.integration.weights_helpers import auth, write_users

pytestmark = pytest.mark.services
SERVICE = "qa.cart"
FILE_RULE = {"id": "cart-success", "metric": "success_rate", "kind": "min", "threshold": 0.9, "service": SERVICE}
API_RULE = {"id": "cart-p99", "metric": "latency_p99", "kind": "max", "threshold": 200, "service": SERVICE}


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


def known_minutes(store: Store, t: int) -> list[int]:
    """Minute 0: slow (500 ms); 1: fast; 2: failing (success 0); 3: fine again."""
    minutes = [t + 60 * i for i in range(4)]
    plan = [(500.0, "ok", 20), (5.0, "ok", 20), (5.0, "error", 4), (5.0, "ok", 20)]
    events = [rpc(m * 1000 + i * 100, "10.5.0.1:8080", latency, status)
              for m, (latency, status, n) in zip(minutes, plan, strict=True) for i in range(n)]
    insert_direct(store, "rpc", events)
    return minutes


def judge(client: TestClient, minute: int) -> dict[str, dict[str, Any]]:
    """Move the alarm clock just past `minute` and wait until every rule has been judged on it."""
    client.app.state.alarms.clock = lambda: minute + 61  # type: ignore[attr-defined]

    def judged() -> bool:
        states = client.get("/v1/alarms").json()["alarms"]
        return all(a["minute_ms"] == minute * 1000 for a in states)

    wait_for(judged, 10, f"the alarms judged on minute {minute}", every_s=0.05)
    return {a["rule"]["id"]: a for a in client.get("/v1/alarms").json()["alarms"]}


def test_rules_fire_and_resolve_once_with_webhooks_and_history(
        tmp_path: Path, broker: Tansu, ch_store: Store, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = receiver
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": [FILE_RULE]}))
    settings = Settings(feed_open=True, users_file=str(write_users(tmp_path / "users.json")),
                        alarm_rules_file=str(rules_file), alarm_interval_s=0.05, alarm_webhook_url=url,
                        kafka_bootstrap=broker.bootstrap)
    minutes = known_minutes(ch_store, minute_t() - 600)
    with TestClient(create_app(settings, store=ch_store)) as client:
        assert client.post("/v1/alarms/rules", json={**API_RULE, "why": "t"}, headers=auth("vic")).status_code == 403
        bad = client.post("/v1/alarms/rules", json={**API_RULE, "kind": "above", "why": "t"}, headers=auth("olga"))
        assert bad.status_code == 422 and "kind" in bad.text
        added = client.post("/v1/alarms/rules", json={**API_RULE, "why": "p99 SLO"}, headers=auth("olga"))
        assert added.status_code == 201, added.text
        wait_for(client.app.state.lease.held, 30, "the alarm lease")  # type: ignore[attr-defined]

        states = [judge(client, m) for m in minutes]
        assert [s["cart-p99"]["state"] for s in states] == ["firing", "ok", "ok", "ok"]
        assert [s["cart-success"]["state"] for s in states] == ["ok", "ok", "firing", "ok"]
        assert states[0]["cart-p99"]["value"] == 500.0 and states[2]["cart-success"]["value"] == 0.0

        wait_for(lambda: len(received) == 4, 10, "four webhook calls")
        assert [(r["rule_id"], r["state"], r["minute_ms"]) for r in received] == [
            ("cart-p99", "firing", minutes[0] * 1000), ("cart-p99", "resolved", minutes[1] * 1000),
            ("cart-success", "firing", minutes[2] * 1000), ("cart-success", "resolved", minutes[3] * 1000)]
        assert received[0]["labels"] == {"service": SERVICE} and received[0]["threshold"] == 200

        history = client.get("/v1/alarms/history", params={"from": minutes[0] * 1000}).json()["events"]
        assert [(e["rule_id"], e["state"]) for e in history] == [
            ("cart-success", "resolved"), ("cart-success", "firing"), ("cart-p99", "resolved"), ("cart-p99", "firing")]

        refused = client.delete("/v1/alarms/rules/cart-success", params={"why": "t"}, headers=auth("olga"))
        assert refused.status_code == 409 and "rules file" in refused.text
        assert client.delete("/v1/alarms/rules/nope", params={"why": "t"}, headers=auth("olga")).status_code == 404
        kept = client.post("/v1/alarms/rules", json={**API_RULE, "id": "kept", "why": "t"}, headers=auth("olga"))
        assert kept.status_code == 201
        gone = client.delete("/v1/alarms/rules/cart-p99", params={"why": "done"}, headers=auth("olga"))
        assert gone.status_code == 200

    with TestClient(create_app(settings, store=ch_store)) as client:  # a restart keeps API rules only
        rules = {r["rule"]["id"]: r["source"] for r in client.get("/v1/alarms/rules").json()}
        assert rules == {"cart-success": "file", "kept": "api"}
