// The viewer page: one document with inline CSS and JavaScript, no external resource (the
// Content-Security-Policy the server sends forbids any). Plain DOM for every text (the
// table, the panels, the chart's legend), so assistive tools and tests can read it.
//
// Responsiveness at high rates: the page keeps the newest events in a bounded buffer and
// renders the table at most four times a second, newest first, up to kRows rows; rates come
// from the server's per-name counters (the "stats" message), not from counting the events
// received, which the server may have skipped for this client.
#include "page.hpp"

namespace emissions::http::detail {

namespace {

constexpr std::string_view kPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>emissions · live events</title>
<style>
:root {
  --bg: #f7f7f9; --fg: #1d1f24; --muted: #6b7080; --card: #ffffff; --line: #e2e4ea;
  --accent: #3060d0; --good: #1f8a4c; --bad: #c23b3b; --warn: #b07a00; --row: #f0f2f7;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14161b; --fg: #e4e6eb; --muted: #9097a6; --card: #1d2027; --line: #2d313b;
          --accent: #7ea2ff; --good: #4cc38a; --bad: #ff7b7b; --warn: #e8b84a; --row: #242833; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; gap: 16px; padding: 12px 20px;
         border-bottom: 1px solid var(--line); background: var(--card); flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
#status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--row); }
#status.live { color: var(--good); } #status.down { color: var(--bad); }
#summary { color: var(--muted); font-variant-numeric: tabular-nums; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px; }
#adapters { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px; }
.adapter { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.adapter h3 { margin: 0 0 6px; font-size: 14px; font-weight: 600; overflow-wrap: anywhere; }
.adapter dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
.adapter dt { color: var(--muted); } .adapter dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.adapter dd[data-stat=failed].nonzero, .adapter dd[data-stat=dropped].nonzero { color: var(--bad); }
.adapter dd[data-stat=retried].nonzero { color: var(--warn); }
#chart svg { width: 100%; height: 140px; display: block; }
#chart .axis { stroke: var(--line); }
#legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin-top: 6px; font-size: 12px; }
#legend span.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
input, select, button { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
                        border-radius: 6px; padding: 4px 8px; }
button { cursor: pointer; } button[aria-pressed=true] { background: var(--accent); color: var(--card); }
#missed { color: var(--warn); font-size: 12px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--muted); font-weight: 500; border-bottom: 1px solid var(--line); padding: 4px 6px; }
td { padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
tr.event { cursor: pointer; } tr.event:hover { background: var(--row); }
td.id, td.preview, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
td.preview { color: var(--muted); max-width: 50vw; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
</style>
</head>
<body>
<header>
  <h1>emissions</h1>
  <span id="status" role="status">connecting</span>
  <span id="summary"></span>
</header>
<main>
  <section aria-labelledby="h-adapters"><h2 id="h-adapters">Adapters</h2><div id="adapters"></div></section>
  <section aria-labelledby="h-rates"><h2 id="h-rates">Events per second, by name (last 5 minutes)</h2>
    <div id="chart"></div><div id="legend"></div></section>
  <section aria-labelledby="h-events"><h2 id="h-events">Recent events</h2>
    <div class="controls">
      <label>Name <select id="filter-name"><option value="">all</option></select></label>
      <label>Text <input id="filter-text" type="search" placeholder="filter by text"></label>
      <button id="pause" aria-pressed="false">Pause</button>
      <span id="missed"></span>
    </div>
    <table id="events"><thead><tr><th>Time</th><th>Name</th><th>Id</th><th>Payload</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
(() => {
  const kRows = 200, kBuffer = 2000, kHistory = 600, kRenderMs = 250;
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("access_token");
  const colors = ["#3060d0", "#d0603a", "#2f9e63", "#9b51e0", "#c9a227", "#1fa3b5", "#d04a8a", "#7a8a33"];
  let buffer = [], paused = false, dirty = false, missed = 0, lastRender = 0;
  let lastCounts = null, lastAt = 0;
  const series = new Map();  // name -> [rate per sample]
  const expanded = new Set();

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function connect() {
    const url = new URL("events", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (token) url.searchParams.set("access_token", token);
    const ws = new WebSocket(url);
    ws.onopen = () => { $("status").textContent = "live"; $("status").className = "live"; };
    ws.onclose = () => {
      $("status").textContent = "disconnected"; $("status").className = "down";
      setTimeout(connect, 2000);
    };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "events") onEvents(msg.events);
      else if (msg.type === "missed") { missed += msg.count; $("missed").textContent = "skipped " + missed + " events (sampling)"; }
      else if (msg.type === "stats") onStats(msg);
    };
  }

  function onEvents(events) {
    if (paused) return;  // paused: the table keeps what it shows
    for (const e of events) buffer.push(e);
    if (buffer.length > kBuffer) buffer = buffer.slice(buffer.length - kBuffer);
    dirty = true;
  }

  function matches(e, name, text) {
    if (name && e.name !== name) return false;
    if (text && JSON.stringify(e).toLowerCase().indexOf(text) < 0) return false;
    return true;
  }

  function render() {
    const now = performance.now();
    if (!dirty || now - lastRender < kRenderMs) return;
    dirty = false; lastRender = now;
    const name = $("filter-name").value, text = $("filter-text").value.trim().toLowerCase();
    const body = document.createElement("tbody");
    let shown = 0;
    for (let i = buffer.length - 1; i >= 0 && shown < kRows; --i) {
      const e = buffer[i];
      if (!matches(e, name, text)) continue;
      ++shown;
      const tr = el("tr", {"class": "event", "data-name": e.name, "data-id": e.id, "tabindex": "0"});
      tr.append(el("td", {"class": "time"}, (e.emitted_at || "").replace("T", " ").replace("Z", "")),
                el("td", {"class": "name"}, e.name), el("td", {"class": "id"}, e.id),
                el("td", {"class": "preview"}, e.payload === undefined ? "" : JSON.stringify(e.payload)));
      tr.addEventListener("click", () => { toggle(e.id); });
      body.append(tr);
      if (expanded.has(e.id)) {
        const d = el("tr", {"class": "detail"}), td = el("td", {"colspan": "4"});
        td.append(el("pre", {}, JSON.stringify(e, null, 2)));
        d.append(td); body.append(d);
      }
    }
    $("events").replaceChild(body, $("events").tBodies[0]);
  }

  function toggle(id) { if (expanded.has(id)) expanded.delete(id); else expanded.add(id); dirty = true; lastRender = 0; render(); }

  function onStats(msg) {
    const box = $("adapters");
    for (const a of msg.adapters) {
      let card = box.querySelector('[data-adapter="' + CSS.escape(a.name) + '"]');
      if (!card) {
        card = el("article", {"class": "adapter", "data-adapter": a.name});
        card.append(el("h3", {}, a.name));
        const dl = el("dl");
        for (const [key, label] of [["delivered", "delivered"], ["failed", "failed"], ["filtered", "filtered"],
                                    ["dropped", "dropped"], ["retried", "retried"], ["dead_lettered", "dead-lettered"],
                                    ["queued", "queued"], ["latency_p50", "latency p50"],
                                    ["latency_p99", "latency p99"]]) {
          dl.append(el("dt", {}, label), el("dd", {"data-stat": key}, "0"));
        }
        card.append(dl); box.append(card);
      }
      for (const dd of card.querySelectorAll("dd")) {
        const v = a[dd.dataset.stat];
        if (dd.dataset.stat.startsWith("latency_")) {
          dd.dataset.value = v === null ? "" : String(v);
          dd.textContent = latencyText(v, a.latency_count);
          continue;
        }
        dd.textContent = String(v);
        dd.classList.toggle("nonzero", v > 0);
      }
    }
    $("summary").textContent = msg.committed + " committed · " + msg.transactions + " transactions · " +
                               msg.discarded + " discarded" + (msg.ready ? "" : " · shutting down");
    const select = $("filter-name");
    for (const name of Object.keys(msg.counts)) {
      if (![...select.options].some((o) => o.value === name)) select.append(el("option", {"value": name}, name));
    }
    const at = performance.now();
    if (lastCounts) {
      const dt = Math.max(0.001, (at - lastAt) / 1000);
      for (const [name, n] of Object.entries(msg.counts)) {
        if (!series.has(name)) series.set(name, []);
        const s = series.get(name);
        s.push((n - (lastCounts[name] || 0)) / dt);
        if (s.length > kHistory) s.shift();
      }
      drawChart();
    }
    lastCounts = msg.counts; lastAt = at;
  }

  // A bucket's upper bound, for people: "≤ 250 µs", "≤ 2.5 ms", "≤ 1 s".
  function latencyText(seconds, count) {
    if (!count) return "–";
    if (seconds === null) return "> 5 s";
    if (seconds < 0.001) return "≤ " + Math.round(seconds * 1e6) + " µs";
    if (seconds < 1) return "≤ " + +(seconds * 1e3).toPrecision(3) + " ms";
    return "≤ " + seconds + " s";
  }

  function drawChart() {
    const ns = "http://www.w3.org/2000/svg", w = 600, h = 140;
    let max = 1;
    for (const s of series.values()) for (const v of s) max = Math.max(max, v);
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "event rates by name");
    const axis = document.createElementNS(ns, "line");
    for (const [k, v] of [["x1", 0], ["y1", h - 1], ["x2", w], ["y2", h - 1], ["class", "axis"]]) axis.setAttribute(k, v);
    svg.append(axis);
    const legend = $("legend"); legend.textContent = "";
    let i = 0;
    for (const [name, s] of series) {
      const color = colors[i++ % colors.length];
      const pts = s.map((v, j) => ((w * (kHistory - s.length + j)) / (kHistory - 1)).toFixed(1) + "," +
                                  (h - 2 - (v / max) * (h - 6)).toFixed(1)).join(" ");
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", pts); line.setAttribute("fill", "none");
      line.setAttribute("stroke", color); line.setAttribute("stroke-width", "1.5");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
      const item = el("span", {"class": "rate", "data-name": name});
      const sw = el("span", {"class": "swatch"}); sw.style.background = color;
      item.append(sw, document.createTextNode(name + " " + Math.round(s[s.length - 1] || 0) + "/s"));
      legend.append(item);
    }
    $("chart").replaceChildren(svg);
  }

  $("pause").addEventListener("click", () => {
    paused = !paused;
    dirty = !paused;  // pausing freezes the table as it is now, even a render due later
    $("pause").setAttribute("aria-pressed", String(paused));
    $("pause").textContent = paused ? "Resume" : "Pause";
  });
  for (const id of ["filter-name", "filter-text"]) $(id).addEventListener("input", () => { dirty = true; lastRender = 0; render(); });
  setInterval(render, kRenderMs);
  connect();
})();
</script>
</body>
</html>
)PAGE";

}  // namespace

std::string_view page_html() noexcept {
  return kPage;
}

}  // namespace emissions::http::detail
