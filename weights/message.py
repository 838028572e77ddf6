"""What the weigh workers publish on svcpulse.weights (key = service) and how it is read back. Pure.

One message per service when its revision changes, plus a heartbeat every few cycles:

    {"v": 1, "feed": {...the feed as GET /v1/weights/{service} serves it...},
     "state": {...the engine's memory for the service...}, "worker": "host:pid",
     "seen": [[instance, side, last_ms, version], ...],  # who called in within forget_s
     "inputs_stale": "" | "why the worker's inputs stopped advancing"}

A null value (a tombstone) removes a service the workers forgot. `state` lets the worker that takes
a partition over (rebalance, restart) continue ejections, slow starts and health where the last one
left them, so weights do not flap back to healthy (docs/weights.md, "Topology").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import orjson

from weights.model import EngineState, InstanceState

VERSION = 1


@dataclass(frozen=True)
class FeedMessage:
    service: str
    feed: dict[str, Any] | None  # None: the service was forgotten (tombstone)
    state: EngineState
    worker: str = ""
    inputs_stale: str = ""
    seen: tuple[tuple[str, str, int, str], ...] = ()


def encode(feed: Mapping[str, Any], state: EngineState, worker: str, seen: Sequence[Sequence[Any]] = (),
           inputs_stale: str = "") -> bytes:
    return orjson.dumps({"v": VERSION, "feed": feed, "state": state_to_json(state), "worker": worker,
                         "seen": [list(s) for s in seen], "inputs_stale": inputs_stale})


def decode(key: bytes | None, value: bytes | None) -> FeedMessage:
    """A message read back; a ValueError names what is wrong (the reader skips it and logs why)."""
    if not key:
        raise ValueError("feed message without a key (the key is the service name)")
    service = key.decode("utf-8", "replace")
    if value is None:
        return FeedMessage(service, None, EngineState())
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("feed"), dict):
        raise ValueError(f"feed message for {service!r}: not a v{VERSION} feed document")
    feed = doc["feed"]
    if feed.get("service") != service or not isinstance(feed.get("instances"), list):
        raise ValueError(f"feed message for {service!r}: feed names {feed.get('service')!r} or has no instances")
    seen = tuple((str(i), str(side), int(last), str(version)) for i, side, last, version in doc.get("seen") or ())
    return FeedMessage(service, feed, state_from_json(doc.get("state") or {}), str(doc.get("worker", "")),
                       str(doc.get("inputs_stale", "")), seen)


def state_to_json(state: EngineState) -> dict[str, Any]:
    return {"updated_ms": state.updated_ms, "instances": {k: asdict(v) for k, v in state.instances.items()}}


def state_from_json(doc: Mapping[str, Any]) -> EngineState:
    instances = {name: InstanceState(**fields) for name, fields in (doc.get("instances") or {}).items()}
    return EngineState(int(doc.get("updated_ms", 0)), MappingProxyType(instances))
