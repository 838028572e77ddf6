"""The two datasources the dashboards read, and their queries as foundation-SDK dataquery variants.

The SDK ships builders for core datasources only; Infinity (yesoreyeram-infinity-datasource, JSON from
the svcpulse API) and the official ClickHouse plugin (grafana-clickhouse-datasource) get small
`Dataquery` classes here that serialise to the JSON each plugin's query model reads. The uids are
fixed so provisioning files, dashboards and the push tool agree without lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

INFINITY_TYPE = "yesoreyeram-infinity-datasource"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
API_UID = "svcpulse-api"
CLICKHOUSE_UID = "svcpulse-clickhouse"
API = dm.DataSourceRef(type_val=INFINITY_TYPE, uid=API_UID)
CLICKHOUSE = dm.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)

# Grafana substitutes these before Infinity sends the request: the panel's time range in epoch ms,
# which is exactly what the API's from/to take.
TIME_RANGE = "from=${__from}&to=${__to}"
CH_TABLE, CH_TIME_SERIES = 1, 0  # the ClickHouse plugin's `format` enum


@dataclass(frozen=True)
class Column:
    """An Infinity column: a selector into each row (dots reach into objects), its name and type."""

    selector: str
    text: str = ""
    type: str = "string"  # string | number | timestamp_epoch (ms) | boolean

    def to_json(self) -> dict[str, str]:
        return {"selector": self.selector, "text": self.text or self.selector, "type": self.type}


def time_ms(selector: str = "time") -> Column:
    return Column(selector, "Time", "timestamp_epoch")


def num(selector: str, text: str = "") -> Column:
    return Column(selector, text, "number")


def text(selector: str, title: str = "") -> Column:
    return Column(selector, title)


@dataclass
class InfinityQuery(cogvariants.Dataquery):
    """A JSON GET against the svcpulse API, parsed by Infinity's backend parser (so alerting works)."""

    url: str
    root_selector: str = ""
    columns: list[Column] = field(default_factory=list)
    ref_id: str = "A"
    root_is_object: bool = False  # the answer is one object, shown as one row
    format: str = "table"  # or node-graph-nodes / node-graph-edges (frames for the node graph panel)

    def to_json(self) -> dict[str, Any]:
        return {"refId": self.ref_id, "datasource": {"type": INFINITY_TYPE, "uid": API_UID},
                "type": "json", "source": "url", "parser": "backend", "format": self.format,
                "url": self.url, "url_options": {"method": "GET", "data": ""},
                "root_selector": self.root_selector, "columns": [c.to_json() for c in self.columns],
                "json_options": {"root_is_not_array": self.root_is_object}, "filters": [],
                "computed_columns": []}


@dataclass
class ClickHouseQuery(cogvariants.Dataquery):
    """Raw SQL for the official ClickHouse plugin; macros ($__timeFilter, $__interval_s) are the plugin's."""

    sql: str
    format: int = CH_TABLE
    ref_id: str = "A"

    def to_json(self) -> dict[str, Any]:
        return {"refId": self.ref_id, "datasource": {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID},
                "editorType": "sql", "rawSql": self.sql, "format": self.format,
                "queryType": "timeseries" if self.format == CH_TIME_SERIES else "table"}


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    """Hands a ready dataquery to the SDK's panel builders (`with_target`)."""

    def __init__(self, query: cogvariants.Dataquery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


def api(url: str, root: str = "", columns: list[Column] | None = None, ref_id: str = "A",
        root_is_object: bool = False, fmt: str = "table") -> Query:
    return Query(InfinityQuery(url, root, columns or [], ref_id, root_is_object, fmt))


def sql(statement: str, fmt: int = CH_TABLE, ref_id: str = "A") -> Query:
    return Query(ClickHouseQuery(" ".join(statement.split()), fmt, ref_id))


def api_variable(name: str, label: str, url: str, root: str, column: str) -> db.QueryVariable:
    """A template variable whose values come from an API list (Infinity's variable query model)."""
    infinity = InfinityQuery(url, root, [text(column)], ref_id="variable").to_json()
    return (db.QueryVariable(name).label(label).datasource(API)
            .query({"queryType": "infinity", "refId": "variable", "infinityQuery": infinity, "query": ""})
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def service_and_instance() -> list[db.QueryVariable]:
    """The service picker (every service the API knows) and, below it, that service's instances."""
    return [api_variable("service", "Service", "/v1/services", "services", "service"),
            api_variable("instance", "Instance", "/v1/services/${service}/instances", "instances", "instance")]


def api_datasource(url: str = "${SVCPULSE_API_URL}", token: str = "${SVCPULSE_API_TOKEN}") -> dict[str, Any]:
    """The Infinity datasource for the svcpulse API. The defaults are Grafana provisioning placeholders
    (filled from Grafana's environment); `dashboards push` passes real values."""
    return {"name": "svcpulse API", "type": INFINITY_TYPE, "uid": API_UID, "access": "proxy", "url": url,
            "editable": False, "jsonData": {"auth_method": "bearerToken", "allowedHosts": [url],
                                            "timeoutInSeconds": 30},
            "secureJsonData": {"bearerToken": token}}


def clickhouse_datasource(host: str = "${SVCPULSE_CLICKHOUSE_HOST}", port: int = 9000,
                          user: str = "${SVCPULSE_CLICKHOUSE_USER}", password: str = "${SVCPULSE_CLICKHOUSE_PASSWORD}",
                          database: str = "svcpulse") -> dict[str, Any]:
    """The official ClickHouse plugin over the native protocol, reading the svcpulse database."""
    return {"name": "svcpulse ClickHouse", "type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID, "editable": False,
            "jsonData": {"host": host, "port": port, "protocol": "native", "username": user,
                         "defaultDatabase": database},
            "secureJsonData": {"password": password}}


def provisioning_datasources() -> dict[str, Any]:
    return {"apiVersion": 1, "datasources": [api_datasource(), clickhouse_datasource()]}
