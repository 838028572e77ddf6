"""Service map: who calls whom over the dashboard's time range, as Grafana's node graph panel, fed by
GET /v1/map through Infinity (`format=grafana` answers the panel's frames: nodes with id, title,
subtitle, mainstat, secondarystat, arc__* and color; edges with id, source, target, mainstat,
secondarystat and color), and the same edges as a table with every figure (docs/dashboards.md)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import nodegraph

from dashboards.panels import board, grid
from dashboards.sources import API, TIME_RANGE, Query, api, num, text

UID = "svcpulse-map"
EDGES_SHOWN = 50  # the API groups the rest per target into one edge from "other callers"
FRAMES_URL = f"/v1/map?format=grafana&limit={EDGES_SHOWN}&{TIME_RANGE}"
NODE_COLUMNS = [text("id"), text("title"), text("subtitle"), text("mainstat"), text("secondarystat"),
                num("arc__success"), num("arc__failed"), num("arc__idle"), text("color"),
                text("detail__kind", "kind"), text("detail__state", "state"), text("detail__why", "why"),
                text("detail__instances", "instances")]
EDGE_COLUMNS = [text("id"), text("source"), text("target"), text("mainstat"), text("secondarystat"), text("color"),
                num("thickness"), text("strokeDasharray"), text("detail__health", "health"),
                text("detail__why", "why"), text("detail__connections", "connections")]
# The node's ring: share of calls (or connections) that succeeded, failed, or none seen.
ARCS = [nodegraph.ArcOption().field("arc__success").color("green"),
        nodegraph.ArcOption().field("arc__failed").color("red"),
        nodegraph.ArcOption().field("arc__idle").color("#8e8e9a")]
EDGE_TABLE = [text("source", "caller"), text("target", "callee"), text("health"), num("rps", "req/s"),
              num("error_rate", "error rate"), num("latency_ms_p99", "p99 ms"), num("tcp_rate", "conn/s"),
              num("tcp_failed", "conn failed"), num("tcp_retransmits", "retransmits"), num("tcp_resets", "resets"),
              text("measured_by", "measured by")]


def frames() -> list[Query]:
    return [api(FRAMES_URL, "nodes", NODE_COLUMNS, "nodes", fmt="node-graph-nodes"),
            api(FRAMES_URL, "edges", EDGE_COLUMNS, "edges", fmt="node-graph-edges")]


def dashboard() -> db.Dashboard:
    graph = (nodegraph.Panel().title("Who calls whom").span(24).height(14).datasource(API)
             .description("Services (state from the weight feed when the range ends now), workloads and endpoints "
                          "callers connect to; edges red when calls or connections fail, a callee instance fails "
                          "this caller's calls, or p99 passes a second. Click a node for its details.")
             .nodes(nodegraph.NodeOptions().arcs(ARCS)))
    for target in frames():
        graph = graph.with_target(target)
    return (board(UID, "svcpulse / Service map", "Who calls whom, and how those calls and connections fare.")
            .with_panel(graph)
            .with_panel(grid("Edges", api(f"/v1/map?limit={EDGES_SHOWN}&{TIME_RANGE}", "edges", EDGE_TABLE),
                             span=24, height=10)))
