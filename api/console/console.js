// svcpulse console: vanilla JS over the svcpulse API, no build step; third-party code only vendored (vendor/).
// Pages (hash routes): #/ services, #/service/<name>, #/map (map.js), #/connections, #/alarms. Charts are inline SVG.
"use strict";

const TOKEN_KEY = "svcpulse.token";
const REFRESH_MS = 10000;
const PALETTE = ["#5794f2", "#73bf69", "#ff9830", "#f2495c", "#b877d9", "#fade2a", "#8ab8ff", "#ff7383"];
const SVG_NS = "http://www.w3.org/2000/svg";
let refreshTimer = null;
let why = ""; // the operator's reason, kept across the periodic re-render

// ---- DOM helpers: text always goes in as text (never innerHTML), so API strings cannot inject markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}
const pill = (state) => el("span", { class: `pill s-${state}` }, String(state).replace("_", " "));
// A name as it is stored (any length, any characters): cut to the column's width, whole in the tooltip.
const name = (text) => el("span", { class: "name", title: text }, text);
const NOT_ROUTABLE = () => el("span", { class: "pill s-observed" }, "observed, not routable");
const panel = (title, ...body) => el("section", { class: "panel" }, el("h2", {}, title), ...body);
const empty = (text) => el("div", { class: "empty" }, text);
const failure = (err) => el("div", { class: "error" }, String(err.message || err));
const show = (main, ...sections) => main.replaceChildren(...sections.flat().filter(Boolean));

// ---- formatting
const fmt = {
  num: (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined,
    { maximumFractionDigits: d, minimumFractionDigits: 0 })),
  pct: (v, d = 2) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(d)}%`),
  ms: (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(v < 10 ? 1 : 0)} ms`),
  bytes: (v) => {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  time: (ms) => (ms ? new Date(ms).toLocaleString() : "–"),
  clock: (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
};

// ---- API access: the token lives in sessionStorage (gone when the tab closes) and goes as a Bearer header.
class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}
async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = answer.headers.get("content-type")?.includes("json") ? await answer.json() : await answer.text();
  if (!answer.ok) {
    const detail = typeof data === "object" ? JSON.stringify(data.detail ?? data) : data;
    throw new ApiError(answer.status, answer.status === 401 ? `${detail} — enter a token above` : detail);
  }
  return data;
}
const get = (path) => call("GET", path);
const enc = encodeURIComponent;

function toast(message, bad = false) {
  const note = el("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(note);
  setTimeout(() => note.remove(), 6000);
}

// A round axis step (1, 2 or 5 x 10^n) at least `raw`, so tick labels read 0, 5, 10 rather than 0, 3.7, 7.4.
function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

// ---- charts: inline SVG; each series is a <path class="series"> with data-points = its number of points.
function lineChart(title, series, format = fmt.num, yRange = {}) {
  const W = 640, H = 220, L = 56, R = 10, T = 10, B = 24;
  const points = series.flatMap((s) => s.points);
  const figure = el("figure", { class: "chart" }, el("h2", {}, title));
  if (!points.length) {
    figure.append(empty("no data in the last hour"));
    return figure;
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 60000);
  const y0 = yRange.min ?? Math.min(0, ...ys);
  const step = niceStep(((yRange.max ?? Math.max(...ys)) - y0) / 4);
  const y1 = yRange.max ?? y0 + Math.max(1, Math.ceil((Math.max(...ys) - y0) / step)) * step;
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const tick = yRange.max === undefined ? step : niceStep((y1 - y0) / 4);
  for (let y = y0; y <= y1 + tick / 1000; y += tick) {
    chart.append(svg("line", { class: "gridline", x1: L, x2: W - R, y1: py(y), y2: py(y) }));
    const label = svg("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end" });
    label.textContent = format(y);
    chart.append(label);
  }
  for (let i = 0; i <= 4; i += 1) {
    const x = x0 + ((x1 - x0) * i) / 4;
    const label = svg("text", { x: px(x), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" });
    label.textContent = fmt.clock(x);
    chart.append(label);
  }
  chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
    chart.append(svg("path", { class: "series", d, stroke: colour, "data-points": s.points.length,
                               "data-label": s.label }));
    legend.append(el("span", {}, el("i", { style: `background:${colour}` }), name(s.label)));
  });
  figure.append(chart, legend);
  return figure;
}

function barChart(title, bars, format = fmt.num) {
  const W = 640, H = 200, L = 44, B = 34, T = 10;
  const figure = el("figure", { class: "chart" }, el("h2", {}, title));
  const max = Math.max(1, ...bars.map((b) => b.value));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const width = (W - L) / bars.length;
  bars.forEach((b, i) => {
    const h = ((H - T - B) * b.value) / max;
    chart.append(svg("rect", { class: "column", x: L + i * width + 2, y: H - B - h, width: width - 4, height: h,
                               fill: PALETTE[0], "data-value": b.value }));
    const label = svg("text", { x: L + i * width + width / 2, y: H - B + 14, "text-anchor": "middle" });
    label.textContent = b.label;
    chart.append(label);
  });
  const top = svg("text", { x: L - 6, y: T + 8, "text-anchor": "end" });
  top.textContent = format(max);
  chart.append(top, svg("line", { class: "axis", x1: L, x2: W, y1: H - B, y2: H - B }));
  figure.append(chart);
  return figure;
}

// ---- health verdicts, the same thresholds the overview and the service page show
function healthOf(svc, feed) {
  const states = (feed?.instances || []).map((i) => i.state);
  if (svc.calls === 0) return "idle";
  if ((svc.success_rate ?? 1) < 0.99 || (svc.latency_ms_p99 ?? 0) > 1000 || states.includes("ejected")) return "critical";
  if ((svc.success_rate ?? 1) < 0.999 || states.includes("degraded") || feed?.mode === "protective") return "warning";
  return "healthy";
}
async function optional(promise) {
  try { return await promise; } catch (err) { return { error: err }; }
}
function labelOf(labels) {
  return Object.values(labels).join(" ") || "all";
}
// Lines sorted by label, so an instance keeps its colour from one chart to the next.
const lines = (series) => series.map((s) => ({ label: labelOf(s.labels), points: s.points }))
  .sort((a, b) => a.label.localeCompare(b.label));
async function seriesOf(params) {
  return lines((await get(`/v1/series?${params}`)).series);
}
function table(headers, rows) {
  const head = el("tr", {}, headers.map((h) => el("th", { class: h.endsWith("#") ? "num" : "" }, h.replace("#", ""))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, rows));
}
const num = (value) => el("td", { class: "num" }, value);

// ---- pages
async function servicesPage(main) {
  const [services, feeds, alarms] = await Promise.all([get("/v1/services"), optional(get("/v1/weights")),
                                                       optional(get("/v1/alarms"))]);
  const byName = Object.fromEntries((feeds.services || []).map((f) => [f.service, f]));
  const firing = (alarms.alarms || []).filter((a) => a.state === "firing");
  const rows = services.services.map((s) => {
    const feed = byName[s.service];
    const states = {};
    (feed?.instances || []).forEach((i) => { states[i.state] = (states[i.state] || 0) + 1; });
    return el("tr", { "data-service": s.service },
      el("td", {}, el("a", { href: `#/service/${enc(s.service)}` }, name(s.service))), el("td", {}, pill(healthOf(s, feed))),
      num(fmt.num(s.rps, 2)), num(fmt.pct(s.success_rate)), num(fmt.ms(s.latency_ms_p50)),
      num(fmt.ms(s.latency_ms_p99)), el("td", {}, Object.entries(states).map(([k, n]) => [pill(`${k}`), ` ${n} `])),
      el("td", {}, feed ? pill(feed.mode) : s.routable ? "–" : NOT_ROUTABLE()));
  });
  show(main, el("div", { class: "head" }, el("h1", {}, "Services"),
                          el("span", { class: "muted" }, `last ${services.window_s / 60} min, server side`)),
    firing.length ? el("div", { class: "panel" }, pill("firing"), ` ${firing.length} alarm(s) firing — `,
                       el("a", { href: "#/alarms" }, "see alarms")) : null,
    panel("Health", rows.length ? table(["service", "health", "rps#", "success#", "p50#", "p99#", "instances by state",
                                         "feed mode"], rows) : empty("no services yet")));
}

function operatorBar(service) {
  return el("form", { class: "operator", onsubmit: (e) => e.preventDefault() },
    el("strong", {}, "Operator"), el("input", { name: "why", placeholder: "why (kept in the audit log)", value: why,
                                                 "aria-label": "why", oninput: (e) => { why = e.target.value; } }),
    el("span", { class: "muted" }, `changes to ${service} need an operator token`));
}
async function act(method, path, body, done) {
  const reason = why.trim();
  if (!reason) { toast("say why first: every change is audited", true); return; }
  try {
    const query = method === "DELETE" ? `${path.includes("?") ? "&" : "?"}why=${enc(reason)}` : "";
    await call(method, path + query, body === undefined ? undefined : { ...body, why: reason });
    toast(done);
    render();
  } catch (err) { toast(err.message, true); }
}
function weightRow(service, i, maxWeight, overrides) {
  const path = `/v1/overrides?service=${enc(service)}&instance=${enc(i.instance)}`;
  const pinInput = el("input", { type: "number", min: 0, max: 10000, placeholder: "weight", "aria-label": "pin weight" });
  const overridden = overrides.some((o) => o.instance === i.instance);
  return el("tr", { "data-instance": i.instance, "data-state": i.state },
    el("td", {}, name(i.instance)), el("td", {}, i.version || "–"),
    el("td", {}, pill(i.state), i.signal === "tcp" ? el("span", { class: "muted", title: "judged by callers' "
      + "TCP connections: rps, success and latency are connections', handshake times" }, " TCP") : null),
    num(i.weight), el("td", {}, el("div", { class: "bar" }, el("div", { style: `width:${(100 * i.weight) / maxWeight}%` }))),
    el("td", { class: "reason" }, i.reason), num(fmt.num(i.rps, 2)), num(fmt.pct(i.success_rate)),
    num(fmt.ms(i.latency_ms_p50)), num(fmt.ms(i.latency_ms_p99)),
    el("td", { class: "actions" },
      i.state === "drained" ? null : el("button", { class: "danger", "data-action": "drain",
        onclick: () => act("PUT", path, { drained: true }, `${i.instance} drained`) }, "Drain"),
      pinInput, el("button", { "data-action": "pin", onclick: () => act("PUT", path,
        { pinned_weight: Number(pinInput.value) }, `${i.instance} pinned at ${pinInput.value}`) }, "Pin"),
      overridden ? el("button", { "data-action": "release", onclick: () => act("DELETE", path, undefined,
        `${i.instance}: override removed`) }, "Clear override") : null));
}

// Instances seen in calls that no registration or discovery policy admits: never in the feed.
function observedPanel(service, instances) {
  const rows = instances.filter((i) => !i.routable).map((i) => el("tr", { "data-observed": i.instance },
    el("td", {}, name(i.instance)), el("td", {}, NOT_ROUTABLE()), num(fmt.num(i.rps, 2)), num(fmt.num(i.calls, 0)),
    el("td", { class: "reason" }, i.admission),
    el("td", { class: "actions" }, el("button", { "data-action": "register", onclick: () => act("POST",
      `/v1/registry/services/${enc(service)}/instances`, { instance: i.instance }, `${i.instance} registered`) },
      "Register"))));
  return panel("Observed, not routable (seen in calls, never in the feed)", rows.length
    ? table(["instance", "status", "rps#", "calls#", "why", "actions"], rows)
    : empty("none: every instance seen is registered or admitted by the discovery policy"));
}

function releasePanel(service, feed, release) {
  const versions = [...new Set(feed.instances.map((i) => i.version).filter(Boolean))];
  const version = el("select", { name: "canary", "aria-label": "canary version" }, versions.map((v) => el("option", {}, v)));
  const percent = el("input", { type: "number", min: 0, max: 100, step: 1, value: 5, name: "percent",
                                "aria-label": "canary percent" });
  const path = `/v1/releases/${enc(service)}`;
  const current = release ? el("p", {}, pill(release.state), ` ${release.canary_version} at ${release.percent}% — `,
    el("span", { class: "muted" }, `${release.reason} (${release.changed_by}, ${fmt.time(release.changed_ms)})`))
    : empty("no release for this service");
  return panel("Gray release", current, el("div", { class: "actions" }, "canary version ", version, " gets ", percent,
    "% ", el("button", { "data-action": "release-start", onclick: () => act("PUT", path,
      { canary_version: version.value, percent: Number(percent.value) }, `release of ${version.value} set`) },
      release?.state === "active" ? "Change percent" : "Start release"),
    release?.state === "active" ? el("button", { class: "danger", onclick: () => act("DELETE", path, undefined,
      "release ended") }, "End release") : null));
}

function capacityPanel(cap) {
  if (cap.error) return panel("Capacity", failure(cap.error));
  const rows = cap.instances.map((i) => el("tr", {}, el("td", {}, i.instance), num(fmt.num(i.rps, 2)),
    num(fmt.num(i.cpu_cores, 3)), num(fmt.num(i.rps_per_core, 1)), num(fmt.num(i.capacity_rps, 1)),
    el("td", {}, i.basis), num(i.headroom_pct === null ? "–" : `${fmt.num(i.headroom_pct)}%`)));
  const days = cap.forecast.days_to_saturation;
  return panel("Capacity and recommendation",
    el("p", { class: "recommend", "data-change": cap.recommendation.change_instances }, cap.recommendation.reason),
    el("p", { class: "muted" }, `capacity ${fmt.num(cap.capacity_rps)} rps for ${fmt.num(cap.rps, 2)} rps now; `,
       `forecast: ${days === null ? "not saturating" : `${fmt.num(days)} days to saturation`}; ${cap.latency_fit}`),
    table(["instance", "rps#", "cpu cores#", "rps/core#", "capacity rps#", "bound", "headroom#"], rows));
}

function alarmRows(alarms) {
  return alarms.map((a) => el("tr", {}, el("td", {}, pill(a.state)), el("td", {}, a.rule.id),
    el("td", {}, `${a.rule.metric} ${a.rule.kind} ${a.rule.threshold}`), el("td", {}, a.rule.service || "all"),
    num(fmt.num(a.value, 3)), el("td", { class: "reason" }, a.message), el("td", {}, fmt.time(a.since_ms))));
}
const ALARM_HEADERS = ["state", "rule", "check", "service", "value#", "message", "since"];

// Callers' TCP connections to each instance (collect tcp): shown when any instance has some.
function connectionsPanel(conns) {
  if (conns.error || !conns.instances.some((i) => i.latest || i.series.length)) return null;
  const perS = (n) => fmt.num(n / conns.window_s, 1);
  const rows = conns.instances.map((i) => {
    const l = i.latest;
    return el("tr", { "data-connections": i.instance }, el("td", {}, i.instance),
      l ? [num(perS(l.attempts)), num(fmt.pct(l.ok_rate)), num(l.refused), num(l.timeouts), num(l.unreachable),
           num(l.resets), num(fmt.num(l.retransmits / Math.max(1, l.attempts), 2)), num(fmt.ms(l.connect_ms_p50)),
           num(fmt.ms(l.connect_ms_p99)), num(fmt.ms(l.srtt_ms_p50))]
        : el("td", { colspan: 10, class: "muted" }, `no connection in the last ${conns.window_s} s`));
  });
  const chartOf = (field) => conns.instances.filter((i) => i.series.length).map((i) => ({
    label: i.instance, points: i.series.filter((p) => p[field] !== null).map((p) => [p.t_ms, p[field]]) }));
  return [panel(`Connection health (callers' TCP, last ${conns.window_s} s)`,
    table(["instance", "conn/s#", "ok#", "refused#", "timed out#", "unreachable#", "reset#", "retrans/conn#",
           "handshake p50#", "handshake p99#", "srtt p50#"], rows)),
  el("div", { class: "grid two" },
    el("section", { class: "panel" }, lineChart("Connections ok by instance", chartOf("ok_rate"),
                                                (v) => fmt.pct(v, 1), { max: 1 })),
    el("section", { class: "panel" }, lineChart("Handshake p99 by instance", chartOf("connect_ms_p99"), fmt.ms)))];
}

async function servicePage(main, service) {
  const q = `service=${enc(service)}&by=instance`;
  const [answer, health, rps, success, p99, cap, overrides, releases, alarms, conns] = await Promise.all([
    optional(get(`/v1/weights/${enc(service)}`)), get(`/v1/services/${enc(service)}/instances`),
    seriesOf(`metric=rps&${q}`), seriesOf(`metric=success_rate&${q}`), seriesOf(`metric=latency_p99&${q}`),
    optional(get(`/v1/capacity/${enc(service)}`)), get(`/v1/overrides?service=${enc(service)}`),
    get("/v1/releases"), optional(get("/v1/alarms")), optional(get(`/v1/services/${enc(service)}/connections`))]);
  // No feed (an observed-only service): the page still shows what was seen and why it is not routed.
  const feed = answer.error ? { instances: [], mode: null, revision: "–", window_s: "–" } : answer;
  const totals = health.instances.reduce((t, i) => ({ calls: t.calls + i.calls, rps: t.rps + i.rps }), { calls: 0, rps: 0 });
  const maxWeight = Math.max(1, ...feed.instances.map((i) => i.weight));
  const mine = (alarms.alarms || []).filter((a) => !a.rule.service || a.rule.service === service);
  const worstP99 = Math.max(0, ...health.instances.map((i) => i.latency_ms_p99 || 0));
  const minSuccess = Math.min(1, ...health.instances.filter((i) => i.calls).map((i) => i.success_rate));
  const card = (label, value, tone) => el("div", { class: "card" }, el("div", { class: "label" }, label),
                                          el("div", { class: `value ${tone || ""}` }, value));
  show(main,
    el("div", { class: "head" }, el("h1", {}, name(service)), feed.mode ? pill(feed.mode) : NOT_ROUTABLE(),
       el("span", { class: "muted" }, `feed revision ${feed.revision} · ${feed.window_s} s window`)),
    el("div", { class: "cards" }, card("requests / s", fmt.num(totals.rps, 2)),
       card("lowest instance success", fmt.pct(minSuccess), minSuccess < 0.99 ? "bad" : minSuccess < 0.999 ? "warn" : "good"),
       card("worst instance p99", fmt.ms(worstP99), worstP99 > 1000 ? "bad" : worstP99 > 250 ? "warn" : "good"),
       card("headroom", cap.error ? "–" : `${fmt.num(cap.headroom_pct)}%`,
            cap.error ? "" : cap.headroom_pct < 20 ? "bad" : cap.headroom_pct < 40 ? "warn" : "good"),
       card("alarms firing", String(mine.filter((a) => a.state === "firing").length))),
    panel("Weights (what load balancers read now)", operatorBar(service),
      answer.error ? empty(`no weight feed: ${answer.error.message}`) :
      table(["instance", "version", "state", "weight#", "", "reason", "rps#", "success#", "p50#", "p99#", "actions"],
            feed.instances.map((i) => weightRow(service, i, maxWeight, overrides)))),
    observedPanel(service, health.instances),
    el("div", { class: "grid three" },
      el("section", { class: "panel" }, lineChart("Requests / s by instance", rps, (v) => fmt.num(v, 1))),
      el("section", { class: "panel" }, lineChart("Success rate by instance", success, (v) => fmt.pct(v, 1), { max: 1 })),
      el("section", { class: "panel" }, lineChart("Latency p99 by instance", p99, fmt.ms))),
    connectionsPanel(conns),
    el("div", { class: "grid two" }, capacityPanel(cap),
       releasePanel(service, feed, releases.find((r) => r.service === service))),
    panel("Alarms", mine.length ? table(ALARM_HEADERS, alarmRows(mine)) : empty("no alarm rules for this service")),
    panel("Overrides in force", overrides.length ? table(["instance", "drained", "pinned", "by", "why", "when"],
      overrides.map((o) => el("tr", {}, el("td", {}, name(o.instance)), el("td", {}, o.drained ? "yes" : "no"),
        num(o.pinned_weight < 0 ? "–" : o.pinned_weight), el("td", {}, o.changed_by), el("td", {}, o.why),
        el("td", {}, fmt.time(o.changed_ms))))) : empty("none: the data decides every weight")));
}

async function connectionsPage(main) {
  const [talkers, byCgroup, series, lifetimes] = await Promise.all([
    get("/v1/connections?by=host,remote&order=bytes&n=15"), get("/v1/connections?by=cgroup,role&n=15"),
    get("/v1/connections/series?metric=connections&by=remote"), get("/v1/connections/lifetimes")]);
  const groupRows = (answer) => answer.groups.map((g) => el("tr", {}, Object.values(g.labels).map((v) => el("td", {}, v || "–")),
    num(fmt.num(g.connections, 0)), num(fmt.bytes(g.tx_bytes)), num(fmt.bytes(g.rx_bytes)),
    num(fmt.ms(g.duration_ms_p50)), num(fmt.ms(g.duration_ms_p99))));
  const numbers = ["connections#", "sent#", "received#", "lifetime p50#", "lifetime p99#"];
  show(main, el("div", { class: "head" }, el("h1", {}, "Connections"),
                          el("span", { class: "muted" }, `eBPF tcplife, last hour, ${lifetimes.total} connections`)),
    el("div", { class: "grid two" },
      el("section", { class: "panel" }, lineChart("New connections / min by remote endpoint",
        lines(series.series), (v) => fmt.num(v, 0))),
      el("section", { class: "panel" }, barChart("Connection lifetimes (count by upper bound)",
        lifetimes.buckets.map((b) => ({ label: b.le_ms === null ? "more" : b.le_ms >= 1000 ? `${b.le_ms / 1000}s` : `${b.le_ms}`,
                                          value: b.count }))))),
    panel("Top talkers (bytes)", talkers.groups.length ? table(["host", "remote", ...numbers], groupRows(talkers))
      : empty("no connections recorded")),
    panel("By cgroup and role", table(["cgroup", "role", ...numbers], groupRows(byCgroup))));
}

async function alarmsPage(main) {
  const [alarms, history] = await Promise.all([get("/v1/alarms"), get("/v1/alarms/history?limit=100")]);
  show(main, el("div", { class: "head" }, el("h1", {}, "Alarms"), el("span", { class: "muted" },
    alarms.evaluated_minute_ms ? `evaluated ${fmt.time(alarms.evaluated_minute_ms)}` : "not evaluated yet")),
    alarms.last_error ? el("div", { class: "error" }, alarms.last_error) : null,
    panel("Rules and states", alarms.alarms.length ? table(ALARM_HEADERS, alarmRows(alarms.alarms))
      : empty("no rules: add them in the rules file or with POST /v1/alarms/rules")),
    panel("Transitions", history.events.length ? table(["when", "rule", "state", "value#", "threshold#", "message"],
      history.events.map((e) => el("tr", {}, el("td", {}, fmt.time(e.ts_ms)), el("td", {}, e.rule_id),
        el("td", {}, pill(e.state)), num(fmt.num(e.value, 3)), num(fmt.num(e.threshold, 3)),
        el("td", { class: "reason" }, e.message)))) : empty("nothing fired or resolved yet")));
}

// ---- routing and refresh
async function render() {
  clearTimeout(refreshTimer);
  if (document.activeElement?.closest("main input, main select")) {
    refreshTimer = setTimeout(render, REFRESH_MS); // do not pull a form away from someone typing in it
    return;
  }
  const main = document.getElementById("main");
  const [, page, arg] = location.hash.split("/");
  const pages = { "": servicesPage, service: servicePage, map: mapPage, connections: connectionsPage,
                  alarms: alarmsPage };
  const show = pages[page || ""] || servicesPage;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.nav === (page === "service" || !page ? "services" : page)));
  try {
    await show(main, decodeURIComponent(arg || ""));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    main.dataset.renders = String(Number(main.dataset.renders || 0) + 1); // lets tests wait for a fresh page
  } catch (err) {
    main.replaceChildren(failure(err));
  }
  refreshTimer = setTimeout(render, REFRESH_MS);
}

function showTokenState() {
  const has = Boolean(sessionStorage.getItem(TOKEN_KEY));
  document.getElementById("token-state").textContent = has ? "token set for this tab" : "no token";
}
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  showTokenState();
  render();
});
document.getElementById("token-clear").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  render();
});
window.addEventListener("hashchange", render);
showTokenState();
render();
