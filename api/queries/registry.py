"""SQL of the registry, operator overrides, gray releases, held roles and the audit log.

Every change is a new row stamped with `changed_ms`; a read takes the newest row per key
(ORDER BY changed_ms DESC LIMIT 1 BY key), which runs on ClickHouse 18.16 and chdb alike and is
right whether or not ReplacingMergeTree has merged yet. Deleting writes a row with deleted = 1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.store import Store

INSTANCE_COLUMNS = ("service", "instance", "static_weight", "version", "enabled", "source", "deleted",
                    "changed_ms", "changed_by")
SERVICE_COLUMNS = ("service", "kind", "description", "signal", "source", "deleted", "changed_ms", "changed_by")
SERVICE_DEFAULTS = {"signal": "auto"}  # rows from writers that do not set it
OVERRIDE_COLUMNS = ("service", "instance", "drained", "pinned_weight", "deleted", "changed_ms", "changed_by", "why")
RELEASE_COLUMNS = ("service", "canary_version", "percent", "state", "reason", "error_margin", "p99_margin",
                   "changed_ms", "changed_by")
AUDIT_COLUMNS = ("ts", "ts_ms", "user", "role", "action", "service", "target", "detail", "why")

_clock_lock = threading.Lock()
_last_stamp = 0


def stamp_ms() -> int:
    """Wall-clock ms, strictly increasing within the process: two changes in one ms must not tie."""
    global _last_stamp
    with _clock_lock:
        _last_stamp = max(int(time.time() * 1000), _last_stamp + 1)
        return _last_stamp


def latest_rows(store: Store, table: str, key: str, where: str = "", params: Mapping[str, Any] | None = None,
            live_only: bool = True) -> list[dict[str, Any]]:
    outer = "WHERE deleted = 0" if live_only else ""
    return store.query(
        f"SELECT * FROM (SELECT * FROM {table} {where} ORDER BY changed_ms DESC LIMIT 1 BY {key}) "
        f"{outer} ORDER BY {key}",
        params,
    )


def _insert_rows(store: Store, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        store.insert(table, columns, [[row[c] for row in rows] for c in columns])


def services(store: Store) -> list[dict[str, Any]]:
    return latest_rows(store, "registry_services", "service")


def instances(store: Store, service: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE service = %(service)s" if service else ""
    return latest_rows(store, "registry_instances", "service, instance", where, {"service": service})


# Where a name may be stored: registry, overrides and policies, and the per-minute rollup of recent calls.
_NAME_SOURCES = (("registry_services", "service", None), ("registry_instances", "service", "instance"),
                 ("weight_overrides", "service", "instance"), ("discovery_policies", "service", None),
                 ("rpc_calls_1m", "callee", "instance"))


def name_stored(store: Store, service: str, instance: str | None = None, since_s: int = 0) -> bool:
    """Whether any table holds this exact service (and instance) name; rollup rows count from since_s."""
    params = {"service": service, "instance": instance, "since_s": since_s}
    for table, service_column, instance_column in _NAME_SOURCES:
        if instance is not None and instance_column is None:
            continue
        where = f"{service_column} = %(service)s"
        if instance is not None:
            where += f" AND {instance_column} = %(instance)s"
        if table == "rpc_calls_1m":
            where += " AND minute >= toDateTime(%(since_s)s)"
        if store.execute(f"SELECT count() FROM (SELECT 1 FROM {table} WHERE {where} LIMIT 1)", params)[0][0]:
            return True
    return False


def write_services(store: Store, rows: Sequence[Mapping[str, Any]]) -> None:
    _insert_rows(store, "registry_services", SERVICE_COLUMNS, [{**SERVICE_DEFAULTS, **row} for row in rows])


def write_instances(store: Store, rows: Sequence[Mapping[str, Any]]) -> None:
    _insert_rows(store, "registry_instances", INSTANCE_COLUMNS, rows)


def register(store: Store, service: str, instances: Sequence[str], *, changed_by: str) -> None:
    """A service and its instances as `PUT /v1/registry/services/{service}` stores them (setup, tests, benches)."""
    stamp = {"source": "api", "deleted": 0, "changed_ms": stamp_ms(), "changed_by": changed_by}
    write_services(store, [{"service": service, "kind": "rpc", "description": "", **stamp}])
    write_instances(store, [{"service": service, "instance": i, "static_weight": 100, "version": "", "enabled": 1,
                             **stamp} for i in instances])


def overrides(store: Store, service: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE service = %(service)s" if service else ""
    return latest_rows(store, "weight_overrides", "service, instance", where, {"service": service})


def write_override(store: Store, row: Mapping[str, Any]) -> None:
    _insert_rows(store, "weight_overrides", OVERRIDE_COLUMNS, [row])


def releases(store: Store, service: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE service = %(service)s" if service else ""
    return latest_rows(store, "releases", "service", where, {"service": service}, live_only=False)


def write_release(store: Store, row: Mapping[str, Any]) -> None:
    _insert_rows(store, "releases", RELEASE_COLUMNS, [row])


def held_role_rows(store: Store) -> list[dict[str, Any]]:
    """The newest assignment per user: {user, role, changed_ms, changed_by}."""
    return store.query("SELECT user, role, changed_ms, changed_by FROM user_roles "
                       "ORDER BY changed_ms DESC LIMIT 1 BY user")


def held_roles(store: Store) -> dict[str, str]:
    return {r["user"]: r["role"] for r in held_role_rows(store)}


def write_held_role(store: Store, user: str, role: str, changed_by: str) -> None:
    store.insert("user_roles", ["user", "role", "changed_ms", "changed_by"],
                 [[user], [role], [stamp_ms()], [changed_by]])


def record_audit(store: Store, *, user: str, role: str, action: str, service: str, target: str,
                 detail: Mapping[str, Any], why: str) -> None:
    """Who did what to which service/instance, with the details and the reason they gave."""
    now = stamp_ms()
    row = {"ts": now // 1000, "ts_ms": now, "user": user, "role": role, "action": action, "service": service,
           "target": target, "detail": json.dumps(detail, sort_keys=True, default=str), "why": why}
    _insert_rows(store, "audit_log", AUDIT_COLUMNS, [row])


def audit(store: Store, service: str | None, limit: int) -> list[dict[str, Any]]:
    where = "WHERE service = %(service)s" if service else ""
    rows = store.query(f"SELECT ts_ms, user, role, action, service, target, detail, why FROM audit_log {where} "
                       "ORDER BY ts_ms DESC LIMIT %(limit)s", {"service": service, "limit": limit})
    for row in rows:
        row["detail"] = json.loads(row["detail"] or "{}")
    return rows

