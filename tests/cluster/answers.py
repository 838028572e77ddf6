"""Ask the cluster and a single server the same questions and list where the answers differ.

Every query API endpoint (through the real app, the clock of its routes frozen so "the last 5
minutes" is the same window on both), the weights' per-instance windows, the alarm series, the
weight history and every dashboard SQL panel. Counts and sums must be equal; latency and lifetime
quantiles (t-digests merged per shard) within the documented error (docs/scaling.md): 2% of the range
of the values they summarise.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import types
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes
from api.main import create_app
from core.settings import Settings
from tests.cluster import dataset

LATENCY_TOLERANCE_MS = 0.02 * (dataset.LATENCY_RANGE_MS[1] - dataset.LATENCY_RANGE_MS[0])
DURATION_TOLERANCE_MS = 0.02 * 12_000  # tcp lifetimes in dataset.tcp span 0..12 s
# Stamped by the app itself when it writes (its weight loop registers the instances it discovers).
_WRITE_TIMES = ("changed_ms",)
# The largest quantile gap seen per tolerance, printed by the tests next to the tolerance it had to meet.
largest_gap: dict[float, float] = {}
_LIFETIME_KEYS = ("duration_ms_p50", "duration_ms_p95", "duration_ms_p99", "p50_ms", "p99_ms")  # tcp lifetimes
_QUANTILE_KEYS = ("p50", "p95", "p99", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99")


def freeze_routes(monkeypatch: pytest.MonkeyPatch, now_s: float) -> None:
    """Every route module's `time.time()` returns `now_s` (the stores and the app's loops keep real time)."""
    clock = types.SimpleNamespace(time=lambda: now_s)
    for module in pkgutil.iter_modules(api.routes.__path__):
        routes = importlib.import_module(f"api.routes.{module.name}")
        if getattr(getattr(routes, "time", None), "__name__", "") == "time":
            monkeypatch.setattr(routes, "time", clock)


def client_on(store: Any) -> TestClient:
    return TestClient(create_app(Settings(feed_open=True, kafka_bootstrap="127.0.0.1:1"), store=store))


def query_urls(end_ms: int) -> list[str]:
    """Every query endpoint, with absolute windows where it takes them; n=100 returns whole top lists."""
    hour, seven = f"from={end_ms - 3_600_000}&to={end_ms}", f"from={end_ms - 7 * 3_600_000}&to={end_ms}"
    recent = f"from={end_ms - 900_000}&to={end_ms}"
    return [
        f"/v1/series?metric=calls&by=instance&service=svc-01&step=60&{hour}",
        f"/v1/series?metric=rps&by=service&{hour}",
        f"/v1/series?metric=success_rate&by=version&service=svc-00&step=300&{hour}",
        f"/v1/series?metric=latency_p99&by=interface&service=svc-02&step=60&{hour}",
        f"/v1/series?metric=latency_p50&service=svc-03&step=10&{recent}",
        f"/v1/series?metric=errors&by=caller&step=3600&{seven}",
        f"/v1/series?metric=latency_p95&service=svc-04&step=3600&{seven}",
        f"/v1/series?metric=calls&side=all&format=rows&step=600&{hour}",
        f"/v1/top/slow-interfaces?n=100&{hour}",
        f"/v1/top/erroring-instances?n=100&{seven}",
        f"/v1/top/busy-callers?service=svc-01&n=100&{hour}",
        "/v1/services", "/v1/services?side=all&window_s=3600",
        "/v1/services/svc-00/instances", "/v1/services/svc-05/interfaces?window_s=1800",
        f"/v1/connections?by=host&{hour}", f"/v1/connections?by=remote&order=bytes&n=100&{seven}",
        f"/v1/connections/series?metric=tx_bytes&by=role&step=300&{hour}",
        f"/v1/connections/lifetimes?{hour}", f"/v1/connections/lifetimes?host=node-1&{recent}",
        "/v1/capacity", "/v1/capacity/svc-00",
    ]


def _sort_key(item: Any) -> str:
    """Rows of a list are compared by their labels, names and counts: order among ties is not an answer."""
    if isinstance(item, dict):
        return repr(sorted((k, _sort_key(v)) for k, v in item.items() if not isinstance(v, float)))
    if isinstance(item, list):
        return repr([_sort_key(v) for v in item if not isinstance(v, float)])
    return repr(item)


def differences(single: Any, cluster: Any, where: str = "", tolerance: float = 0.0) -> list[str]:
    """Where `cluster` differs from `single`; floats within `tolerance` (quantiles) or 1e-9 relative."""
    if isinstance(single, dict) and isinstance(cluster, dict):
        if single.keys() != cluster.keys():
            return [f"{where}: keys {sorted(single)} != {sorted(cluster)}"]
        found = []
        for key in single.keys() - set(_WRITE_TIMES):
            inner = tolerance or (DURATION_TOLERANCE_MS if key in _LIFETIME_KEYS else
                                  LATENCY_TOLERANCE_MS if key in _QUANTILE_KEYS else 0.0)
            found += differences(single[key], cluster[key], f"{where}.{key}", inner)
        return found
    if isinstance(single, list) and isinstance(cluster, list):
        if len(single) != len(cluster):
            return [f"{where}: {len(single)} items != {len(cluster)}"]
        if single and isinstance(single[0], dict):
            single, cluster = sorted(single, key=_sort_key), sorted(cluster, key=_sort_key)
        return [d for i, (a, b) in enumerate(zip(single, cluster, strict=True))
                for d in differences(a, b, f"{where}[{i}]", tolerance)]
    if isinstance(single, float) or isinstance(cluster, float):
        if single is None or cluster is None or math.isnan(float(single)) != math.isnan(float(cluster)):
            return [] if single == cluster else [f"{where}: {single} != {cluster}"]
        allowed = max(tolerance, 1e-9 * max(abs(single), abs(cluster)))
        if tolerance:
            largest_gap[tolerance] = max(largest_gap.get(tolerance, 0.0), abs(single - cluster))
        return [] if abs(single - cluster) <= allowed else [f"{where}: {single} != {cluster} (+-{allowed:g})"]
    return [] if single == cluster else [f"{where}: {single!r} != {cluster!r}"]


def metric_tolerance(url: str) -> float:
    """Series of a latency metric carry quantiles in their points."""
    return LATENCY_TOLERANCE_MS if "metric=latency_" in url else 0.0


def write_small_tables(store: Any, now_ms: int) -> None:
    """The same registry, override, release, audit, alarm-rule and weight-history rows, stamped alike."""
    from api.alarms.rules import RuleSpec
    from api.queries import registry as reg
    from api.queries.alarms import RULE_COLUMNS
    from api.queries.weights import insert_history

    stamp = {"changed_ms": now_ms - 60_000, "changed_by": "cluster-test"}
    reg.write_services(store, [{"service": "svc-00", "kind": "http", "description": "", "source": "api",
                                "deleted": 0, **stamp}])
    reg.write_instances(store, [{"service": "svc-00", "instance": dataset.instance(0, k), "static_weight": 100,
                                 "version": "v1", "enabled": 1, "source": "api", "deleted": 0, **stamp}
                                for k in range(dataset.INSTANCES)])
    reg.write_override(store, {"service": "svc-00", "instance": dataset.instance(0, 3), "drained": 1,
                               "pinned_weight": -1, "deleted": 0, "why": "test", **stamp})
    reg.write_release(store, {"service": "svc-01", "canary_version": "v2", "percent": 5.0, "state": "active",
                              "reason": "", "error_margin": 0.02, "p99_margin": 0.5, **stamp})
    store.insert("audit_log", reg.AUDIT_COLUMNS, [[now_ms // 1000], [now_ms], ["op"], ["operator"], ["drain"],
                                                  ["svc-00"], ["x"], ["{}"], ["test"]])
    rule = RuleSpec(id="p99-svc-00", metric="latency_p99", kind="max", threshold=150.0, service="svc-00")
    store.insert("alarm_rules", RULE_COLUMNS, [["p99-svc-00"], [rule.model_dump_json()], [0], [now_ms], ["op"]])
    # A service without calls: the apps' own weight loops publish (and record) feeds of the services with calls.
    feeds = [{"service": "svc-history", "generated_at_ms": now_ms - s * 2000, "revision": f"r{s}", "mode": "normal",
              "instances": [{"instance": dataset.instance(0, k), "weight": 100 - k * s % 50, "state": "healthy",
                             "reason": "", "success_rate": 0.99, "latency_ms_p50": 10.0, "latency_ms_p99": 90.0,
                             "rps": 12.5, "version": "v1"} for k in range(dataset.INSTANCES)]} for s in range(60)]
    insert_history(store, feeds)


SMALL_TABLE_URLS = ("/v1/registry/services", "/v1/overrides", "/v1/releases", "/v1/audit", "/v1/alarms/rules",
                    "/v1/weights/svc-history/history?minutes=60")


def dashboard_answers(store: Any, from_ms: int, to_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Every ClickHouse SQL panel of the built dashboards, macros expanded as the Grafana plugin does."""
    from dashboards.build import dashboards
    from dashboards.sources import CLICKHOUSE_TYPE
    from tests.dashboard_checks import expand_clickhouse, targets

    variables = {"service": "svc-00", "instance": "10.4.1.1:5432", "__from": str(from_ms), "__to": str(to_ms)}
    return {where: store.query(expand_clickhouse(query["rawSql"], from_ms, to_ms, 60, variables))
            for model in dashboards().values() for where, query in targets(model, CLICKHOUSE_TYPE)}
