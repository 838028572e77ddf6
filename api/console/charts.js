// svcpulse console, the charts: uPlot 1.6.32 (vendored, api/console/vendor/) behind two calls, lineChart and
// barChart. Under the pointer the legend reads out each series' value at that time; a drag zooms the time
// axis, a double-click resets it; charts given the same `sync` key (the charts of one service page) share
// their crosshair, their zoom and its reset (uPlot's cursor.sync). The console redraws a page every 10 s:
// a chart is kept by its key across redraws (the same <figure>, the same uPlot instance, moved into the new
// page), new data go in with setData, and a zoomed chart keeps its range until the user resets it. Charts
// a redraw did not ask for are destroyed.
// Uses console.js's helpers (el, empty, fmt, PALETTE) at call time.
"use strict";

const CHART_HEIGHT = 200;
const PANEL = "#181b1f"; // console.css's --panel: the few points drawn (fewPoints) are hollow on it
const AXIS = { stroke: "#8e8e9a", font: "11px sans-serif", grid: { stroke: "#22252b", width: 1 },
               ticks: { stroke: "#2c3235", width: 1 } };
const CHARTS = new Map(); // key -> { figure, plot, shape, zoomed, generation, resize }
let chartGeneration = 0;

// A redraw of the page begins: charts it does not ask for again are dropped when it ends (dropStaleCharts).
function beginCharts() {
  chartGeneration += 1;
}
function dropStaleCharts() {
  for (const [key, chart] of CHARTS) {
    if (chart.generation !== chartGeneration) destroyChart(key);
  }
}
function destroyChart(key) {
  const chart = CHARTS.get(key);
  chart.resize.disconnect();
  chart.plot.destroy();
  CHARTS.delete(key);
}

// uPlot wants one x array and one y array per series over it: the union of the series' times, with null
// where a series has no point (drawn as a gap, read out as "–"). The ends of `span` ([from_ms, to_ms]),
// when given, join the times so that the charts of one page share one time axis (a series that starts late
// does not stretch its chart), and the crosshair falls on the same place in each.
function alignedData(series, span = []) {
  const times = [...new Set([...span, ...series.flatMap((s) => s.points.map((p) => p[0]))])].sort((a, b) => a - b);
  const column = new Map(times.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const values = new Array(times.length).fill(null);
    s.points.forEach(([t, v]) => { values[column.get(t)] = v; });
    return values;
  });
  return [times, ...ys];
}

// The y range: from 0 (rates, latencies and counts are never negative), capped at `max` when one is given
// (a success rate stops at 100%), with a little air above the highest value shown.
function yRange(max) {
  return (u, low, high) => {
    if (low === null || high === null) return [0, max ?? 1];
    const [, top] = uPlot.rangeNum(0, high, 0.1, true);
    const bottom = max === undefined ? 0 : Math.max(0, uPlot.rangeNum(low, high, 0.1, true)[0]);
    return [bottom, Math.min(max ?? Infinity, top || 1)];
  };
}

// The x range is zoomed when the scale shows less than the data span; a double-click puts it back.
function xZoomed(u) {
  const times = u.data[0];
  if (times.length < 2) return false;
  return u.scales.x.min > times[0] || u.scales.x.max < times[times.length - 1];
}

// Points are drawn only where a line has too few to show a shape (a lone point draws no line).
const fewPoints = (u, i, first, last) => u.data[i].slice(first, last + 1).filter((v) => v !== null).length < 3;

// A legend read-out: the value shown by `show`, or "–" where the series has no point.
const readOut = (show) => (u, v) => (v === null || v === undefined ? "–" : show(v));

function chartFigure(key, title) {
  return el("figure", { class: "chart", "data-chart": key, "aria-label": title }, el("h2", {}, title));
}

// Draws a chart, or updates the one kept under `key` when its series are the same (labels and colours in
// order); a kept chart takes the new data with setData(data, false) while zoomed, which keeps both scales:
// the zoomed window stays put while its lines take the new points.
function drawChart(key, title, shape, options, data) {
  const kept = CHARTS.get(key);
  if (kept && kept.shape === shape) {
    kept.generation = chartGeneration;
    kept.plot.setData(data, !kept.zoomed);
    return kept.figure;
  }
  if (kept) destroyChart(key);
  const chart = { figure: chartFigure(key, title), shape, zoomed: false, generation: chartGeneration };
  const hooks = { setScale: [(u, scale) => { if (scale === "x") chart.zoomed = xZoomed(u); }] };
  chart.plot = new uPlot({ ...options, width: 600, height: CHART_HEIGHT, hooks }, data, chart.figure);
  // Sized to its column once the page holds it, and again whenever the column changes width.
  chart.resize = new ResizeObserver(([entry]) => {
    const width = Math.floor(entry.contentRect.width);
    if (width > 0 && width !== chart.plot.width) chart.plot.setSize({ width, height: CHART_HEIGHT });
  });
  chart.resize.observe(chart.figure);
  CHARTS.set(key, chart);
  return chart.figure;
}

// Lines over time: `series` = [{label, points: [[t_ms, value], ...]}]; `colour(label, i)` picks a line's
// colour (the service page passes one that matches its tables); `sync` groups charts sharing a crosshair
// and `span` ([from_ms, to_ms]) gives them one time axis.
function lineChart(key, title, series,
                   { format = fmt.num, max, sync, span, colour = (label, i) => PALETTE[i % PALETTE.length] } = {}) {
  if (!series.some((s) => s.points.length)) {
    if (CHARTS.has(key)) destroyChart(key);
    const figure = chartFigure(key, title);
    figure.append(empty("no data in the last hour"));
    return figure;
  }
  const data = alignedData(series, span);
  const options = {
    ms: 1, // the API's times are milliseconds
    // Synced by time (x) only: the y values of different metrics mean nothing to each other.
    cursor: { sync: sync ? { key: sync, scales: ["x", null] } : undefined, drag: { x: true, y: false } },
    scales: { y: { range: yRange(max) } },
    series: [{ label: "time", value: readOut((t) => new Date(t).toLocaleTimeString()) },
             ...series.map((s, i) => ({ label: s.label, stroke: colour(s.label, i), width: 1.6, value: readOut(format),
                                         spanGaps: false, points: { show: fewPoints, fill: PANEL } }))],
    axes: [{ ...AXIS }, { ...AXIS, size: 60, values: (u, splits) => splits.map(format) }],
  };
  const shape = JSON.stringify(["line", ...series.map((s, i) => [s.label, colour(s.label, i)])]);
  return drawChart(key, title, shape, options, data);
}

// Counts per category (a histogram): `bars` = [{label, value}]; the read-out names the category.
function barChart(key, title, bars, { format = fmt.num } = {}) {
  const labels = bars.map((b) => b.label);
  const data = [labels.map((_, i) => i), bars.map((b) => b.value)];
  const category = (i) => labels[Math.round(i)] ?? "";
  const options = {
    scales: { x: { time: false, range: (u) => [-0.5, u.data[0].length - 0.5] }, y: { range: yRange() } },
    cursor: { drag: { setScale: false } }, // ten buckets: nothing to zoom into
    series: [{ label: "bucket", value: readOut(category) },
             { label: "count", stroke: PALETTE[0], fill: `${PALETTE[0]}b0`, value: readOut(format),
               paths: uPlot.paths.bars({ size: [0.8, 60] }), points: { show: false } }],
    axes: [{ ...AXIS, splits: (u) => u.data[0], values: (u, splits) => splits.map(category) },
           { ...AXIS, size: 60, values: (u, splits) => splits.map(format) }],
  };
  const shape = JSON.stringify(["bars", labels]);
  return drawChart(key, title, shape, options, data);
}
