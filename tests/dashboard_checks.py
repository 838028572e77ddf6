"""Reading built dashboards as data: their targets and variable queries, Grafana's substitutions done
the way Grafana and the plugins do them, and the shape check of Infinity's backend parser."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from dashboards.sources import CLICKHOUSE_TYPE, INFINITY_TYPE


def panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def targets(model: Mapping[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, query) for every panel target and variable query of a datasource type."""
    for panel in panels(model):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == kind:
                yield f"{model['uid']} / {panel['title']} / {target['refId']}", target
    if kind == INFINITY_TYPE:
        for variable in model.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("type") == INFINITY_TYPE:
                yield f"{model['uid']} / ${variable['name']}", variable["query"]["infinityQuery"]


def datasource_uids(model: Mapping[str, Any]) -> set[str]:
    found = {p["datasource"]["uid"] for p in panels(model) if p.get("datasource")}
    found |= {t["datasource"]["uid"] for kind in (INFINITY_TYPE, CLICKHOUSE_TYPE) for _, t in targets(model, kind)}
    found |= {v["datasource"]["uid"] for v in model.get("templating", {}).get("list", []) if v.get("datasource")}
    return found


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Grafana's template variables, `${name}` and `$name` forms."""
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
        text = re.sub(rf"\${re.escape(name)}\b", value, text)
    assert "${" not in text, f"unsubstituted variable in {text!r}"
    return text


def expand_clickhouse(sql: str, from_ms: int, to_ms: int, interval_s: int, variables: Mapping[str, str]) -> str:
    """The grafana-clickhouse-datasource macros this project uses, expanded as the plugin does."""
    from_s, to_s = from_ms // 1000, to_ms // 1000
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({from_s}) AND \1 <= toDateTime({to_s})", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({from_s})").replace("$__toTime", f"toDateTime({to_s})")
    sql = sql.replace("$__interval_s", str(interval_s))
    assert "$__" not in sql, f"a macro the test does not expand: {sql}"
    return substitute(sql, variables)


def select(doc: Any, path: str) -> Any:
    """A dotted selector (Infinity backend: gjson / JSONata field paths) into a JSON value."""
    for part in filter(None, path.split(".")):
        if not isinstance(doc, dict) or part not in doc:
            raise KeyError(path)
        doc = doc[part]
    return doc


_TYPES = {"number": (int, float), "string": (str,), "timestamp_epoch": (int,), "boolean": (bool,)}


def shape_problems(where: str, query: Mapping[str, Any], answer: Any, may_be_empty: bool = False) -> list[str]:
    """Why Infinity's backend parser would not get the rows and columns the query configures ([] = fine)."""
    try:
        found = select(answer, query["root_selector"])
    except KeyError:
        return [f"{where}: root selector {query['root_selector']!r} finds nothing"]
    rows = [found] if query.get("json_options", {}).get("root_is_not_array") else found
    if isinstance(rows, list) and not rows and may_be_empty:
        return []
    if not isinstance(rows, list) or not rows:
        return [f"{where}: root selector {query['root_selector']!r} gives {type(rows).__name__}, not a "
                f"non-empty list"]
    problems = []
    for column in query["columns"]:
        for row in rows:
            try:
                value = select(row, column["selector"])
            except KeyError:
                problems.append(f"{where}: column {column['selector']!r} missing in a row: {row}")
                break
            wanted = _TYPES[column["type"]]
            if value is not None and (not isinstance(value, wanted) or isinstance(value, bool) != (bool in wanted)):
                problems.append(f"{where}: column {column['selector']!r} is {value!r}, not {column['type']}")
                break
    return problems
