"""The control plane's small tables as one process knows them, merged from any source. Pure.

Registry services and instances, discovery policies, overrides, releases and held roles are written
by the API to ClickHouse and, at the same time, to the compacted topic svcpulse.control (key = table +
row key).
Workers and API replicas load the tables once at start (when ClickHouse answers) and then follow
the topic, so a write reaches every process within one poll (docs/weights.md, "Control topic").
Rows carry `changed_ms`; the newest row per key wins whichever source delivered it first, so
replays, duplicates and the order of the two sources do not matter.

Intents are control messages that ask the lease holder to do something exactly once (record a gray
release a worker aborted); they are not table rows (see `intent_key`). Telemetry never writes
registry rows: what is routable is decided in every cycle from the registry and the discovery
policies (weights/admission.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from weights.admission import Authority, DiscoveryPolicy, authority, parse_policy
from weights.inputs import to_overrides
from weights.model import Override

# table -> the columns that identify a row
KEYS: dict[str, tuple[str, ...]] = {
    "registry_services": ("service",),
    "registry_instances": ("service", "instance"),
    "discovery_policies": ("service",),
    "weight_overrides": ("service", "instance"),
    "releases": ("service",),
    "user_roles": ("user",),
}
INTENTS = ("release.abort",)


def row_key(table: str, row: Mapping[str, Any]) -> str:
    return "/".join([table, *(str(row[c]) for c in KEYS[table])])


def intent_key(kind: str, ident: str) -> str:
    return f"intent/{kind}/{ident}"


def encode_row(table: str, row: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a table row for svcpulse.control."""
    if table not in KEYS:
        raise ValueError(f"{table!r} is not a control table; expected one of {sorted(KEYS)}")
    return row_key(table, row).encode(), orjson.dumps({"table": table, "row": dict(row)})


def encode_intent(kind: str, ident: str, body: Mapping[str, Any]) -> tuple[bytes, bytes]:
    if kind not in INTENTS:
        raise ValueError(f"{kind!r} is not an intent; expected one of {INTENTS}")
    return intent_key(kind, ident).encode(), orjson.dumps({"intent": kind, **body})


def decode(value: bytes) -> dict[str, Any]:
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or not ((doc.get("table") in KEYS and isinstance(doc.get("row"), dict))
                                         or doc.get("intent") in INTENTS):
        raise ValueError("control message is neither a table row nor a known intent")
    return doc


class ControlView:
    """The newest row per key of every control table."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in KEYS}

    def apply(self, table: str, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Merge rows (newest changed_ms per key wins); True when anything changed."""
        changed = False
        current = self.tables[table]
        for row in rows:
            key = row_key(table, row)
            held = current.get(key)
            if held is None or int(row["changed_ms"]) > int(held["changed_ms"]):
                current[key] = dict(row)
                changed = True
        return changed

    def live(self, table: str) -> list[dict[str, Any]]:
        """Rows not deleted (releases keep every state: ended and aborted ones say what happened)."""
        rows = self.tables[table].values()
        return [r for r in rows if table == "releases" or not r.get("deleted")]

    def policies(self) -> dict[str, DiscoveryPolicy]:
        return {r["service"]: parse_policy(r) for r in self.live("discovery_policies")}

    def authority(self) -> Authority:
        """What operators made: registered instances and services, discovery policies (weights/admission.py)."""
        return authority(self.live("registry_instances"), self.live("registry_services"), self.policies())

    def overrides(self) -> dict[str, dict[str, Override]]:
        return to_overrides(self.live("weight_overrides"))

    def releases(self) -> dict[str, dict[str, Any]]:
        return {r["service"]: r for r in self.live("releases")}

    def held_roles(self) -> dict[str, str]:
        return {r["user"]: r["role"] for r in self.live("user_roles")}
