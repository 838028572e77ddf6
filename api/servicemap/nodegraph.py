"""The map in the shape of Grafana's node graph panel (docs: "Node graph", Data API), pure.

Two frames, `nodes` and `edges`, with the field names the panel reads: nodes id, title, subtitle,
mainstat, secondarystat, arc__* (fractions adding up to 1: success, failed, idle) and color; edges id,
source, target, mainstat, secondarystat, color, thickness, strokeDasharray; detail__* fields show in
the panel's context menu. Stats are preformatted text ("12.3 req/s"), so the panel needs no units.
Infinity reads each frame with format "node-graph-nodes" / "node-graph-edges" (dashboards/map.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

NONE = "n/a"


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.{2 if value > 0.99 else 1}f}%"


def _stats(calls: int, rps: float | None, success: float | None, p99: float | None, tcp_rate: float,
           tcp_success: float | None) -> tuple[str, str]:
    if calls:
        return f"{rps:.1f} req/s", f"{_pct(success)} ok · p99 {NONE if p99 is None else f'{p99:.0f} ms'}"
    if tcp_rate:
        return f"{tcp_rate:.1f} conn/s", f"{_pct(tcp_success)} connect ok"
    return "", ""


def node_frame(node: Mapping[str, Any]) -> dict[str, Any]:
    main, secondary = _stats(node["calls"], node["rps"], node["success_rate"], node["latency_ms_p99"],
                             node["tcp_rate"], node["tcp_success_rate"])
    success = node["success_rate"] if node["calls"] else node["tcp_success_rate"]
    arcs = (0.0, 0.0, 1.0) if success is None else (success, round(1 - success, 5), 0.0)
    return {"id": node["id"], "title": node["title"], "subtitle": node["subtitle"], "mainstat": main,
            "secondarystat": secondary, "arc__success": arcs[0], "arc__failed": arcs[1], "arc__idle": arcs[2],
            "color": node["color"], "detail__kind": node["kind"], "detail__state": node["state"],
            "detail__why": node["state_why"] or "; ".join(node["why"]),
            "detail__instances": ", ".join(f"{n} {s}" for s, n in sorted(node["instances"].items()))}


def edge_frame(edge: Mapping[str, Any]) -> dict[str, Any]:
    main, secondary = _stats(edge["calls"], edge["rps"], None if edge["error_rate"] is None else 1 - edge["error_rate"],
                             edge["latency_ms_p99"], edge["tcp_rate"],
                             None if edge["tcp_failure_rate"] is None else 1 - edge["tcp_failure_rate"])
    thickness = round(1 + min(4.0, math.log10(1 + edge["rps"] + edge["tcp_rate"])), 2)  # 1 to 5 px
    return {"id": edge["id"], "source": edge["source"], "target": edge["target"], "mainstat": main,
            "secondarystat": secondary, "color": edge["color"], "thickness": thickness,
            "strokeDasharray": "" if edge["calls"] else "6 3", "detail__health": edge["health"],
            "detail__why": "; ".join(edge["why"]) or edge["health"],
            "detail__connections": f"{edge['tcp_attempts']} ({edge['tcp_failed']} failed, "
                                   f"{edge['tcp_retransmits']} retransmits, {edge['tcp_resets']} resets)"}


def frames(graph: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{nodes, edges} in the node graph panel's field names."""
    return {"nodes": [node_frame(n) for n in graph["nodes"]], "edges": [edge_frame(e) for e in graph["edges"]]}
