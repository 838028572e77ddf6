"""Aggregate rows -> metric values -> series or flat rows (pure; the query routes and alarms share it).

A row holds one bucket of one label set: calls, errors, timeouts and p50/p95/p99 (ms). Metrics:
rates are per second of the bucket; success_rate counts errors and timeouts as failures; latency
metrics are the bucket's quantiles. Count metrics (rps, calls, errors) are 0 in a bucket without
calls; ratios and latencies have no value there (a gap, not a fake zero).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from api.timerange import Window

Metric = Literal["rps", "calls", "errors", "error_rate", "success_rate", "latency_p50", "latency_p95",
                 "latency_p99"]
METRICS: tuple[str, ...] = Metric.__args__  # type: ignore[attr-defined]
COUNT_METRICS = frozenset({"rps", "calls", "errors"})


def metric_value(metric: str, row: Mapping[str, Any], seconds: float) -> float | None:
    calls = row["calls"]
    failures = row["errors"] + row["timeouts"]
    if metric == "rps":
        return round(calls / seconds, 6)
    if metric == "calls":
        return float(calls)
    if metric == "errors":
        return float(failures)
    if metric in ("error_rate", "success_rate"):
        if not calls:
            return None
        rate = failures / calls
        return round(rate if metric == "error_rate" else 1 - rate, 6)
    return row[metric.removeprefix("latency_")]


def labels_of(row: Mapping[str, Any], by: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((d, row[d]) for d in by)


def build_series(rows: Iterable[Mapping[str, Any]], by: Sequence[str], metric: str, window: Window,
                 max_series: int) -> list[dict[str, Any]]:
    """[{labels, points: [[ts_ms, value], ...]}], the busiest `max_series` label sets first."""
    buckets: dict[tuple[tuple[str, str], ...], dict[int, float | None]] = {}
    totals: dict[tuple[tuple[str, str], ...], int] = {}
    for row in rows:
        key = labels_of(row, by)
        buckets.setdefault(key, {})[row["t"]] = metric_value(metric, row, window.step_s)
        totals[key] = totals.get(key, 0) + row["calls"]
    keep = sorted(totals, key=lambda k: (-totals[k], k))[:max_series]
    series = []
    for key in keep:
        values = buckets[key]
        if metric in COUNT_METRICS:
            values = {t: values.get(t, 0.0) for t in window.buckets}
        points = [[t * 1000, v] for t, v in sorted(values.items()) if v is not None]
        series.append({"labels": dict(key), "points": points})
    return series


def series_label(labels: Mapping[str, str], metric: str) -> str:
    """One string per series for flat rows: "instance=10.0.0.1:80,version=v2", or the metric name."""
    return ",".join(f"{k}={v}" for k, v in labels.items()) or metric


def to_rows(series: Iterable[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Flat [{time, series, value}] (what Grafana's Infinity datasource parses without transforms)."""
    return [{"time": t, "series": series_label(s["labels"], metric), "value": v}
            for s in series for t, v in s["points"]]


def summary(row: Mapping[str, Any] | None, seconds: float) -> dict[str, Any]:
    """Health over a window: rps, success rate and latency quantiles (no calls: rps 0, the rest None)."""
    row = row or {"calls": 0, "errors": 0, "timeouts": 0, "p50": None, "p95": None, "p99": None}
    return {"calls": row["calls"], "rps": metric_value("rps", row, seconds),
            "success_rate": metric_value("success_rate", row, seconds),
            "latency_ms_p50": row["p50"], "latency_ms_p95": row["p95"], "latency_ms_p99": row["p99"]}
