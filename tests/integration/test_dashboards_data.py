"""The built dashboards against the real API and store (no Grafana server can run here, so each query is
checked as data): every Infinity query, with its template variables filled in, is answered by the real
API over demo data in the shape its parser settings expect; every ClickHouse SQL panel runs, its
macros expanded as the plugin does, on ClickHouse 18.16 and on chdb."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboards.build import dashboards
from dashboards.sources import CLICKHOUSE_TYPE, INFINITY_TYPE
from svcpulse.services import Tansu
from tests.dashboard_checks import expand_clickhouse, shape_problems, substitute, targets
from tests.integration.demo_api import DemoApi, demo_api
from tests.integration.demo_events import SICK

pytestmark = pytest.mark.services

SERVICE = "shop.checkout"
# Panels whose data depends on something the demo may not do in a short run.
MAY_BE_EMPTY = {"svcpulse-weights / Ejections / A", "svcpulse-rpc-health / Alarm transitions / A"}


@pytest.fixture(params=["ch_store", "chdb_store"])
def demo(request: pytest.FixtureRequest, tmp_path: Path, broker: Tansu) -> Iterator[DemoApi]:
    with demo_api(tmp_path, broker, request.getfixturevalue(request.param)) as api, \
            httpx.Client(base_url=api.base, timeout=30) as client:
        # Give the operator panels something to show: a pin on the selected service, a gray release, a rule.
        pinned = client.put(f"/v1/overrides/{SERVICE}/127.0.0.11:8080", headers=api.operator,
                            json={"pinned_weight": 100, "why": "dashboard test"})
        released = client.put("/v1/releases/shop.catalog", headers=api.operator,
                              json={"canary_version": "v2.1.0-rc1", "percent": 5, "why": "dashboard test"})
        rule = client.post("/v1/alarms/rules", headers=api.operator, json={
            "id": "checkout-p99", "metric": "latency_p99", "kind": "max", "threshold": 250, "service": SERVICE,
            "why": "dashboard test"})
        assert [r.status_code for r in (pinned, released, rule)] == [200, 200, 201], (pinned.text, released.text,
                                                                                     rule.text)
        yield api


def test_infinity_queries_and_sql_panels_against_real_data(demo: DemoApi) -> None:
    to_ms = int(time.time() * 1000)
    variables = {"service": SERVICE, "instance": SICK, "__from": str(to_ms - 3_600_000), "__to": str(to_ms)}
    problems: list[str] = []
    checked = {INFINITY_TYPE: 0, CLICKHOUSE_TYPE: 0}
    with httpx.Client(base_url=demo.base, headers=demo.viewer, timeout=30) as client:
        # The service and instance pickers list what the demo emits, the values substituted here.
        assert SERVICE in {s["service"] for s in client.get("/v1/services").json()["services"]}
        assert SICK in {i["instance"] for i in client.get(f"/v1/services/{SERVICE}/instances").json()["instances"]}
        for model in dashboards().values():
            for where, query in targets(model, INFINITY_TYPE):
                answer = client.get(substitute(query["url"], variables))
                if answer.status_code != 200:
                    problems.append(f"{where}: {answer.status_code} {answer.text[:200]}")
                    continue
                problems += shape_problems(where, query, answer.json(), where in MAY_BE_EMPTY)
                checked[INFINITY_TYPE] += 1
            for where, query in targets(model, CLICKHOUSE_TYPE):
                sql = expand_clickhouse(query["rawSql"], to_ms - 3_600_000, to_ms, 10, variables)
                try:
                    rows = demo.store.query(sql)
                except Exception as err:  # report every failing panel, not only the first
                    problems.append(f"{where}: {err}\n{sql}")
                    continue
                if not rows and where not in MAY_BE_EMPTY:
                    problems.append(f"{where}: no rows over demo data\n{sql}")
                checked[CLICKHOUSE_TYPE] += 1
    assert not problems, "\n".join(problems)
    assert checked[INFINITY_TYPE] >= 30 and checked[CLICKHOUSE_TYPE] >= 10, checked

