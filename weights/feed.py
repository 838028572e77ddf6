"""The weight feed document (DESIGN.md, "Weight feed") and the gray-release rescaling hook (pure).

A route builds the dict with `build_feed(service, result)`, optionally passes it through
`apply_canary(feed, canary_version, percent)`, and sends `feed["revision"]` in quotes as the ETag.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from weights.model import EngineResult

# Ejected instances keep their probe weight and drained ones their 0: a gray release must not push
# traffic at an instance the engine or an operator took out.
_NOT_ROUTABLE = frozenset({"ejected", "drained"})


def build_feed(service: str, result: EngineResult) -> dict[str, Any]:
    """`{service, revision, generated_at_ms, window_s, mode, instances: [...]}`, instances by name."""
    rows = [_row(asdict(i)) for i in sorted(result.instances, key=lambda i: i.instance)]
    return {
        "service": service,
        "revision": feed_revision(result.mode, rows),
        "generated_at_ms": result.generated_at_ms,
        "window_s": result.window_s,
        "mode": result.mode,
        "instances": rows,
    }


def feed_revision(mode: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Content hash of what a balancer acts on: mode and each instance's weight, state and version.

    Reasons and statistics are left out on purpose: they change every cycle, and a revision that
    always changes would wake every long-poll every cycle for nothing. So a 304 can hide fresher
    statistics, never a different weight or state.
    """
    acted_on = sorted((r["instance"], r["weight"], r["state"], r["version"]) for r in rows)
    payload = json.dumps([mode, acted_on], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def canary_weights(
    weights: Mapping[str, int],
    versions: Mapping[str, str],
    canary_version: str,
    percent: float,
    total: int | None = None,
) -> dict[str, int]:
    """Rescale so instances of `canary_version` get `percent` % of the total weight.

    Weights inside each group keep their proportions. The output sums to `total` (default: the
    input sum), so the canary share is exact to 1/total: pass total=10_000 for 0.01% precision.
    A group with no weight at all cannot take a share; the other group then gets everything.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    total = sum(weights.values()) if total is None else total
    canary = {k: w for k, w in weights.items() if versions.get(k) == canary_version}
    stable = {k: w for k, w in weights.items() if k not in canary}
    canary_total = round(total * percent / 100)
    if not any(canary.values()):
        canary_total = 0
    elif not any(stable.values()):
        canary_total = total
    return {**_scale(canary, canary_total), **_scale(stable, total - canary_total)}


def apply_canary(feed: Mapping[str, Any], canary_version: str, percent: float) -> dict[str, Any]:
    """The feed with routable instances rescaled by canary_weights; a new revision to match."""
    routable = [r for r in feed["instances"] if r["state"] not in _NOT_ROUTABLE]
    scaled = canary_weights(
        {r["instance"]: r["weight"] for r in routable},
        {r["instance"]: r["version"] for r in routable},
        canary_version,
        percent,
    )
    rows = [{**r, "weight": scaled.get(r["instance"], r["weight"])} for r in feed["instances"]]
    return {**feed, "instances": rows, "revision": feed_revision(feed["mode"], rows)}


def _scale(group: Mapping[str, int], target: int) -> dict[str, int]:
    """Integer weights proportional to `group` summing exactly to `target` (largest remainder)."""
    current = sum(group.values())
    if current <= 0 or target <= 0:
        return dict.fromkeys(group, 0)
    exact = {k: w * target / current for k, w in group.items()}
    out = {k: int(v) for k, v in exact.items()}
    # Hand the units lost to flooring to the largest fractions; names break ties deterministically.
    by_fraction = sorted(group, key=lambda k: (out[k] - exact[k], k))
    for k in by_fraction[: target - sum(out.values())]:
        out[k] += 1
    return out


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """Round statistics for the wire; weights and states are exact already."""
    for key, digits in (("success_rate", 4), ("latency_ms_p50", 1), ("latency_ms_p99", 1), ("rps", 2)):
        if row[key] is not None:
            row[key] = round(row[key], digits)
    return row
