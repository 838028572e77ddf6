"""SQL of the discovery policies (migration 0007): newest row per service, deleted = 1 to remove."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from api.queries.registry import latest_rows, stamp_ms
from pipeline.store import Store
from weights.admission import DiscoveryPolicy, parse_policy

POLICY_COLUMNS = ("service", "cidrs", "ports", "server_side_only", "deleted", "changed_ms", "changed_by", "why")


def policy_rows(store: Store, service: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE service = %(service)s" if service is not None else ""
    return latest_rows(store, "discovery_policies", "service", where, {"service": service})


def policies(store: Store) -> dict[str, DiscoveryPolicy]:
    """The policies in force, by service (what weights.admission.admit takes)."""
    return {row["service"]: parse_policy(row) for row in policy_rows(store)}


def write_policy(store: Store, service: str, cidrs: Sequence[str], ports: Sequence[int] = (),
                 server_side_only: bool = True, *, changed_by: str = "svcpulse", why: str = "",
                 deleted: bool = False) -> dict[str, Any]:
    """Store one policy row (the API validates first; tests and `svcpulse up` call this directly)."""
    row: Mapping[str, Any] = {"service": service, "cidrs": list(cidrs), "ports": [int(p) for p in ports],
                              "server_side_only": int(server_side_only), "deleted": int(deleted),
                              "changed_ms": stamp_ms(), "changed_by": changed_by, "why": why}
    store.insert("discovery_policies", POLICY_COLUMNS, [[row[c]] for c in POLICY_COLUMNS])
    return dict(row)


def observed_sides(store: Store, service: str, from_s: int) -> dict[str, set[str]]:
    """Instances of `service` seen in calls since from_s (per-minute rollup), with the sides that reported them."""
    rows = store.execute("SELECT instance, groupUniqArray(side) FROM rpc_calls_1m WHERE callee = %(service)s "
                         "AND minute >= toDateTime(%(from_s)s) AND instance != '' GROUP BY instance",
                         {"service": service, "from_s": from_s})
    return {instance: set(sides) for instance, sides in rows}
