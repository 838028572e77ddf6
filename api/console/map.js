// svcpulse console, the service map page (#/map): GET /v1/map drawn as a graph. Layout by dagre (vendored,
// api/console/vendor/): layered left to right, callers before callees, the same input always the same
// picture (the API sorts nodes and edges). Colours are the API's (node: the feed's state; edge: the health
// of its calls and connections). A click on a service opens its page. Uses console.js's helpers at call time.
"use strict";

const MAP_RANGES = { "15 min": 15, "1 h": 60, "6 h": 360 };
const NODE_W = 220, NODE_H = 58;
let mapRangeMin = 15;

function mapLayout(graph) {
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: "LR", nodesep: 26, ranksep: 120, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  graph.nodes.forEach((n) => g.setNode(n.id, { width: NODE_W, height: NODE_H }));
  graph.edges.forEach((e) => g.setEdge(e.source, e.target));
  dagre.layout(g);
  return g;
}

function edgeTitle(e) {
  const parts = [`${e.source} → ${e.target}: ${e.health}`];
  if (e.calls) parts.push(`${fmt.num(e.rps, 2)} req/s, ${fmt.pct(e.error_rate)} errors, p99 ${fmt.ms(e.latency_ms_p99)}`);
  if (e.tcp_attempts) parts.push(`${fmt.num(e.tcp_rate, 2)} conn/s, ${e.tcp_failed} failed, `
                                 + `${e.tcp_retransmits} retransmits, ${e.tcp_resets} resets`);
  return [...parts, ...e.why].join("\n");
}

function mapEdge(e, g, markers) {
  const points = g.edge(e.source, e.target).points;
  const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
  const width = 1.5 + Math.min(4, Math.log10(1 + e.rps + e.tcp_rate));
  const path = svg("path", { class: "map-edge", d, stroke: e.color, "stroke-width": width.toFixed(2),
                             "marker-end": `url(#${markers(e.color)})`, "data-source": e.source,
                             "data-target": e.target, "data-health": e.health });
  if (!e.calls) path.setAttribute("stroke-dasharray", "6 4"); // connections only: no call was measured
  const title = svg("title", {});
  title.textContent = edgeTitle(e);
  path.append(title);
  return path;
}

// What a node shows under its title: what it served, else what reached it by TCP, else what it called.
function nodeStat(n, outRps) {
  if (n.calls) return `${fmt.num(n.rps, 1)} req/s · ${fmt.pct(n.success_rate, 1)} · p99 ${fmt.ms(n.latency_ms_p99)}`;
  if (n.tcp_rate) return `${fmt.num(n.tcp_rate, 1)} conn/s · ${fmt.pct(n.tcp_success_rate, 1)} ok`;
  return outRps ? `calls out ${fmt.num(outRps, 1)} req/s` : "";
}

function mapNode(n, g, outRps) {
  const { x, y } = g.node(n.id);
  const group = svg("g", { class: `map-node k-${n.kind}`, transform: `translate(${x - NODE_W / 2},${y - NODE_H / 2})`,
                           "data-id": n.id, "data-state": n.state, "data-color": n.color });
  group.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 6, stroke: n.color, fill: "#181b1f" }),
               svg("rect", { width: 6, height: NODE_H, rx: 3, fill: n.color }));
  const lines = [[n.title, "map-title", 20], [nodeStat(n, outRps), "map-stat", 36], [n.subtitle, "map-sub", 50]];
  for (const [text, cls, dy] of lines) {
    const label = svg("text", { x: 14, y: dy, class: cls });
    label.textContent = text.length > 34 ? `${text.slice(0, 33)}…` : text;
    group.append(label);
  }
  const title = svg("title", {});
  title.textContent = [n.name, n.state_why, ...n.why].filter(Boolean).join("\n");
  group.append(title);
  if (n.kind === "service") {
    group.classList.add("link");
    group.addEventListener("click", () => { location.hash = `#/service/${enc(n.name)}`; });
  }
  return group;
}

function mapPicture(graph) {
  const g = mapLayout(graph);
  const { width, height } = g.graph();
  const picture = svg("svg", { class: "map", viewBox: `0 0 ${Math.max(width, 200)} ${Math.max(height, 80)}`,
                               role: "img", "aria-label": "Service map" });
  const defs = svg("defs", {});
  const made = new Map();
  const markers = (colour) => { // one arrow head per colour, so each takes its edge's colour
    if (!made.has(colour)) {
      const id = `arrow-${made.size}`;
      const marker = svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                                     orient: "auto-start-reverse" });
      marker.append(svg("path", { d: "M0,0L10,5L0,10z", fill: colour }));
      defs.append(marker);
      made.set(colour, id);
    }
    return made.get(colour);
  };
  const outRps = {};
  graph.edges.forEach((e) => { outRps[e.source] = (outRps[e.source] || 0) + e.rps; });
  picture.append(defs, ...graph.edges.map((e) => mapEdge(e, g, markers)),
                 ...graph.nodes.map((n) => mapNode(n, g, outRps[n.id])));
  picture.style.maxWidth = `${Math.max(width, 200) * 1.1}px`;
  return picture;
}

function mapEdgeRows(edges, titles) {
  return edges.map((e) => el("tr", { "data-edge": e.id }, el("td", {}, titles[e.source]), el("td", {}, titles[e.target]),
    el("td", {}, pill(e.health)), num(e.calls ? fmt.num(e.rps, 2) : "–"), num(fmt.pct(e.error_rate)),
    num(fmt.ms(e.latency_ms_p99)), num(e.tcp_attempts ? fmt.num(e.tcp_rate, 2) : "–"),
    num(fmt.pct(e.tcp_failure_rate)), num(e.tcp_attempts ? e.tcp_retransmits : "–"),
    el("td", { class: "reason" }, e.why.join("; "))));
}

async function mapPage(main) {
  const to = Date.now();
  const graph = await get(`/v1/map?from=${to - mapRangeMin * 60000}&limit=60`);
  const range = el("select", { "aria-label": "range", onchange: (ev) => { mapRangeMin = Number(ev.target.value); render(); } },
    Object.entries(MAP_RANGES).map(([label, min]) => el("option", { value: min, selected: min === mapRangeMin }, label)));
  const titles = Object.fromEntries(graph.nodes.map((n) => [n.id, n.title]));
  const left = graph.omitted.edges ? ` · ${graph.omitted.edges} more edges to nodes not shown` : "";
  show(main, el("div", { class: "head" }, el("h1", {}, "Service map"), range,
                el("span", { class: "muted" }, `${graph.nodes.length} nodes, ${graph.edges.length} edges; `
                  + `states from the weight feed now, figures over the range${left}`)),
    panel("Who calls whom", graph.nodes.length ? mapPicture(graph) : empty("no calls or connections in the range"),
      el("div", { class: "legend" }, ["healthy", "warning", "critical"].map((h) => el("span", {},
        el("i", { class: `h-${h}` }), h)), el("span", { class: "muted" }, "dashed: connections only (no calls)"))),
    panel("Edges", graph.edges.length ? table(["caller", "callee", "health", "req/s#", "errors#", "p99#", "conn/s#",
      "conn failed#", "retransmits#", "why"], mapEdgeRows(graph.edges, titles)) : empty("none")));
}
