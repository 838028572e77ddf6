"""Panel shapes the four dashboards share: API time series, tables, stats and state timelines."""

from __future__ import annotations

from urllib.parse import urlencode

from grafana_foundation_sdk.builders import barchart, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.sources import API, CLICKHOUSE, TIME_RANGE, Column, Query, api, num, service_and_instance, text, time_ms

# /v1/series?format=rows answers [{time, series, value}]: long rows. Grafana's prepareTimeSeries
# (multi) turns them into one frame per `series` value, so every label set becomes its own line.
LONG_TO_MULTI = dm.DataTransformerConfig(id_val="prepareTimeSeries", options={"format": "multi"})
ROW_COLUMNS = [time_ms("time"), text("series"), num("value")]
HEALTH_COLUMNS = [num("rps", "rps"), num("success_rate", "success"), num("latency_ms_p50", "p50 ms"),
                  num("latency_ms_p95", "p95 ms"), num("latency_ms_p99", "p99 ms"), num("calls", "calls")]


def series_url(path: str, **params: str) -> str:
    """An API time-series URL in rows format over the dashboard's time range. Template variables stay
    literal (`${service}`): Grafana fills them in before Infinity sends the request."""
    query = urlencode({k: v for k, v in params.items() if v}, safe="${}:,")
    return f"{path}?{query}&format=rows&{TIME_RANGE}"


def rpc_series(metric: str, ref_id: str = "A", **params: str) -> Query:
    return api(series_url("/v1/series", metric=metric, **params), "", ROW_COLUMNS, ref_id)


def lines(title: str, unit: str, *targets: Query, description: str = "", span: int = 12,
          clickhouse: bool = False) -> timeseries.Panel:
    """A time-series panel; API rows are reshaped long -> one line per series, SQL frames come ready."""
    panel = (timeseries.Panel().title(title).description(description).unit(unit).span(span).height(8)
             .datasource(CLICKHOUSE if clickhouse else API).line_width(1).fill_opacity(8)
             .show_points(cm.VisibilityMode.NEVER))
    if not clickhouse:
        panel = panel.with_transformation(LONG_TO_MULTI)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def grid(title: str, target: Query, description: str = "", span: int = 12, height: int = 8,
         clickhouse: bool = False) -> table.Panel:
    return (table.Panel().title(title).description(description).span(span).height(height)
            .datasource(CLICKHOUSE if clickhouse else API).with_target(target).filterable(True))


def single(title: str, target: Query, unit: str, description: str = "", span: int = 6,
           steps: list[tuple[float | None, str]] | None = None) -> stat.Panel:
    """A stat; `steps` are (threshold, colour) from the lowest (None = base) upwards."""
    thresholds = db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in (steps or [(None, "green")])])
    return (stat.Panel().title(title).description(description).unit(unit).span(span).height(4)
            .datasource(API).with_target(target).thresholds(thresholds).graph_mode(cm.BigValueGraphMode.NONE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))


def states(title: str, target: Query, description: str = "", span: int = 24) -> statetimeline.Panel:
    """A weight-state timeline (from SQL): healthy green, degraded/slow_start amber, ejected red."""
    colours = {"healthy": "green", "new": "blue", "slow_start": "yellow", "degraded": "orange",
               "ejected": "red", "drained": "purple"}
    mapping = dm.ValueMap(options={s: dm.ValueMappingResult(color=c, text=s) for s, c in colours.items()})
    return (statetimeline.Panel().title(title).description(description).span(span).height(6)
            .datasource(CLICKHOUSE).with_target(target).mappings([mapping]).show_value(cm.VisibilityMode.NEVER))


def bars(title: str, target: Query, x_field: str, unit: str = "", description: str = "",
         span: int = 12) -> barchart.Panel:
    return (barchart.Panel().title(title).description(description).span(span).height(8).datasource(API)
            .with_target(target).x_field(x_field).unit(unit))


def row(title: str) -> db.Row:
    return db.Row(title)


def health_table(title: str, path: str, root: str, key: Column, description: str = "") -> table.Panel:
    """Health rows of the API (instances, interfaces): key column, then rps, success and latencies."""
    return grid(title, api(path, root, [key, *HEALTH_COLUMNS]), description)


def board(uid: str, title: str, description: str) -> db.Dashboard:
    """A svcpulse dashboard: tagged, the last hour, refreshed every 30 s, service and instance pickers."""
    dashboard = (db.Dashboard(title).uid(uid).description(description).tags(["svcpulse"]).editable()
                 .time("now-1h", "now").refresh("30s").timezone("browser"))
    for variable in service_and_instance():
        dashboard = dashboard.with_variable(variable)
    return dashboard


def keep_rows(field: str, value: str) -> dm.DataTransformerConfig:
    """Grafana's filterByValue: keep the rows whose `field` equals `value` (a list answer, one row wanted)."""
    return dm.DataTransformerConfig(id_val="filterByValue", options={
        "type": "include", "match": "any",
        "filters": [{"fieldName": field, "config": {"id": "equal", "options": {"value": value}}}]})
