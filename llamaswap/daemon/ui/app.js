// llamaswap's web UI: plain JavaScript, no build step. One EventSource (/api/events) feeds every
// page; Chart.js (vendored, see vendor/README.md) draws the charts. State lives in `S`; each page
// has a render function called when its data changes and it is visible.
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const LOG_LIMIT = 200000;
const ACTIVITY_ROWS = 500;
const S = {
  models: [], inflight: new Map(), logs: { proxy: "", upstream: "" }, activity: [], stats: null,
  states: [], queue: [], scheduler: null, swaps: [], page: "models", filters: {},
};
window.llamaswap = S; // for the browser tests and curious operators

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "text") node.textContent = v; else node[k] = v;
  }
  for (const kid of kids) node.append(kid);
  return node;
};
const fmtS = (s) => (s === null || s === undefined ? "–"
  : s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`);
const fmtTime = (unix) => (unix ? new Date(unix * 1000).toLocaleTimeString() : "–");
const api = async (path, opts = {}) => {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r;
};

// ------------------------------------------------------------------ event stream

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("#conn").textContent = "live"; $("#conn").className = "conn live"; };
  es.onerror = () => { $("#conn").textContent = "reconnecting"; $("#conn").className = "conn down"; };
  es.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    const data = JSON.parse(msg.data);
    (HANDLERS[msg.type] || (() => {}))(data);
  };
}

const HANDLERS = {
  modelStatus(models) { S.models = models; renderModels(); fillModelSelects(); },
  logData({ source, data }) {
    if (!data) return;
    S.logs[source] = (S.logs[source] + data).slice(-LOG_LIMIT);
    if (S.page === "logs") renderLogs();
  },
  inflight(m) {
    if (m.operation === "snapshot") { S.inflight = new Map((m.requests || []).map((r) => [r.id, r])); }
    else if (m.operation === "upsert") S.inflight.set(m.request.id, m.request);
    else if (m.operation === "remove") S.inflight.delete(m.id);
  },
  activity(m) {
    if (m.skipped && S.page === "activity") { refreshStatsSoon(); return; }
    if (!m.row || !matches(m.row)) return;
    S.activity.unshift(m.row);
    S.activity.length = Math.min(S.activity.length, ACTIVITY_ROWS);
    if (S.page === "activity") { renderActivityRows(); refreshStatsSoon(); }
  },
  processState(m) { S.states.push({ t: m.at, model: m.model, state: m.new }); timelineDirty = true; },
  queueDepth(m) { S.queue.push([m.at, m.depth]); timelineDirty = true; },
  scheduler(m) { S.scheduler = m; if (S.page === "scheduler") renderScheduler(); },
  swap(m) { S.swaps.unshift(m); S.swaps.length = Math.min(S.swaps.length, 50); if (S.page === "scheduler") renderSwaps(); },
  whatif(m) { if (m.state !== "running") loadWhatifJob(m.id); },
  dropped(m) { showBanner(`The event stream dropped this page (${m.reason}); reconnecting.`); },
};

function showBanner(text) { const b = $("#banner"); b.textContent = text; b.hidden = false; }

// ------------------------------------------------------------------ pages

function show(page) {
  S.page = PAGES[page] ? page : "models";
  for (const sec of document.querySelectorAll(".page")) sec.hidden = sec.id !== `page-${S.page}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.hash === `#${S.page}`);
  PAGES[S.page]();
}
const PAGES = {
  models: renderModels,
  activity: loadActivity,
  timeline: () => { loadTimeline(); },
  scheduler: () => { renderScheduler(); renderSwaps(); },
  logs: renderLogs,
  whatif: loadWhatifInfo,
  chat: fillModelSelects,
};

// ------------------------------------------------------------------ models

function renderModels() {
  if (S.page !== "models") return;
  const body = $("#models-table tbody");
  body.replaceChildren(...S.models.map((m) => {
    const load = el("button", { class: "load", "data-model": m.id, text: "load" });
    load.onclick = () => api(`/api/models/load/${encodeURIComponent(m.id)}`, { method: "POST" });
    const unload = el("button", { class: "unload", "data-model": m.id, text: "unload" });
    unload.onclick = () => api(`/api/models/unload/${encodeURIComponent(m.id)}`, { method: "POST" });
    const logs = el("button", { class: "logs", "data-model": m.id, text: "log" });
    logs.onclick = () => openModelLog(m.id);
    return el("tr", { "data-model": m.id },
      el("td", {}, el("b", { text: m.id }), m.name ? ` ${m.name}` : ""),
      el("td", {}, el("span", { class: `state ${m.state}`, text: m.state })),
      el("td", { class: "num queued", text: m.queued }),
      el("td", { class: "num inflight", text: m.inFlight }),
      el("td", { text: fmtTime(m.lastUsed) }),
      el("td", { class: "num", text: m.ttlLeft === null ? "–" : `${m.ttlLeft} s` }),
      el("td", { class: "num", text: m.pid ?? "–" }),
      el("td", {}, load, " ", unload, " ", logs));
  }));
  const ready = S.models.filter((m) => m.state === "ready").length;
  $("#models-summary").textContent = `${ready} of ${S.models.length} ready`;
}

let modelLogAbort = null;
async function openModelLog(id) {
  if (modelLogAbort) modelLogAbort.abort();
  modelLogAbort = new AbortController();
  $("#model-log-box").hidden = false;
  $("#model-log-name").textContent = id;
  await streamInto($("#model-log"), id, modelLogAbort);
}
$("#model-log-close").onclick = () => { if (modelLogAbort) modelLogAbort.abort(); $("#model-log-box").hidden = true; };

function fillModelSelects() {
  for (const sel of [$("#activity-filters [name=model]"), $("#chat-model")]) {
    const have = [...sel.options].map((o) => o.value).filter((v) => v);
    const want = S.models.map((m) => m.id);
    if (have.join() === want.join()) continue;
    const keep = sel.value;
    sel.replaceChildren(...(sel.id === "chat-model" ? [] : [el("option", { value: "", text: "any" })]),
      ...want.map((id) => el("option", { value: id, text: id })));
    sel.value = keep || (sel.id === "chat-model" ? want[0] || "" : "");
  }
}

// ------------------------------------------------------------------ activity

function filterQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(S.filters)) if (v) q.set(k, v);
  return q;
}
function matches(row) {
  const f = S.filters;
  if (f.model && row.model !== f.model) return false;
  if (f.status) {
    const s = String(row.status);
    if (/^[1-5]xx$/i.test(f.status) ? s[0] !== f.status[0] : s !== f.status) return false;
  }
  return !(f.since && row.ts < f.since);
}
$("#activity-filters").onsubmit = (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const since = form.get("since");
  S.filters = { model: form.get("model"), status: form.get("status").trim(),
    since: since ? (Date.now() / 1000 - Number(since)).toFixed(0) : "" };
  loadActivity();
};
async function loadActivity() {
  const q = filterQuery();
  q.set("limit", ACTIVITY_ROWS);
  const data = await (await api(`/api/activity?${q}`)).json();
  S.activity = data.rows;
  S.stats = data.stats;
  q.set("format", "csv"); q.set("limit", 10000);
  $("#activity-export").href = `/api/activity?${q}`;
  renderActivityRows();
  renderStats();
}
let statsTimer = null;
function refreshStatsSoon() {
  if (statsTimer) return;
  statsTimer = setTimeout(async () => {
    statsTimer = null;
    S.stats = (await (await api(`/api/activity?${filterQuery()}&limit=1`)).json()).stats;
    renderStats();
  }, 1000);
}
function renderActivityRows() {
  const num = (v, f = (x) => x) => el("td", { class: "num", text: v === null || v === undefined ? "–" : f(v) });
  $("#activity-table tbody").replaceChildren(...S.activity.map((r) => el("tr", { "data-id": r.id },
    el("td", { class: "num", text: r.id }), el("td", { text: fmtTime(r.ts) }), el("td", { text: r.model || "–" }),
    el("td", { class: r.status >= 400 ? "status-bad" : "", text: r.status }),
    el("td", { text: r.stream ? "yes" : "no" }),
    num(r.queue_wait, fmtS), num(r.load_wait, fmtS), num(r.ttfb, fmtS), num(r.total, fmtS),
    el("td", { class: "num prompt", text: r.prompt_tokens ?? "–" }),
    el("td", { class: "num completion", text: r.completion_tokens ?? "–" }),
    num(r.tokens_per_s), el("td", { text: r.key_name || "" }))));
}
let histChart = null;
function renderStats() {
  const s = S.stats;
  if (!s) return;
  const card = (k, v) => el("div", { class: "card" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k }));
  $("#activity-stats").replaceChildren(card("requests", s.requests), card("errors", s.errors),
    card("prompt tokens", s.prompt_tokens), card("completion tokens", s.completion_tokens),
    card("mean tokens/s", s.mean_tokens_per_s ?? "–"), card("latency p50", fmtS(s.latency_p50)),
    card("latency p95", fmtS(s.latency_p95)));
  const edges = s.histogram.edges;
  const labels = s.histogram.counts.map((_, i) => (i < edges.length ? `≤ ${fmtS(edges[i])}` : `> ${fmtS(edges[edges.length - 1])}`));
  if (!histChart) {
    histChart = new Chart($("#latency-hist"), {
      type: "bar",
      data: { labels, datasets: [{ label: "requests by total latency (2xx/3xx)", data: s.histogram.counts, backgroundColor: TAB10[0] }] },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  } else {
    histChart.data.labels = labels;
    histChart.data.datasets[0].data = s.histogram.counts;
    histChart.update();
  }
}

// ------------------------------------------------------------------ timeline (same visual language as the simulator's report)

let gantt = null, queueChart = null, timelineDirty = false;
const STATE_STYLE = { ready: 0.9, starting: 0.35, stopping: 0.2 };
async function loadTimeline() {
  const data = await (await api("/api/timeline")).json();
  S.states = data.states;
  S.queue = data.queue;
  timelineDirty = true;
  drawTimeline();
}
function segments(now) {
  const models = [...new Set([...S.models.map((m) => m.id), ...S.states.map((s) => s.model)])].sort();
  const open = new Map();
  const bars = { ready: [], starting: [], stopping: [] };
  const close = (model, t) => {
    const o = open.get(model);
    if (o && bars[o.state]) bars[o.state].push({ x: [o.t, t], y: model, row: models.indexOf(model) });
    open.delete(model);
  };
  for (const s of S.states) { close(s.model, s.t); open.set(s.model, s); }
  for (const model of [...open.keys()]) close(model, now);
  return { models, bars };
}
function drawTimeline() {
  if (S.page !== "timeline") return;
  const now = Date.now() / 1000;
  const choice = $("#timeline-window").value;
  const first = S.states.length ? S.states[0].t : now - 60;
  const span = choice === "fit" ? Math.max(10, (now - first) * 1.02) : Number(choice);
  const { models, bars } = segments(now);
  const colour = (alpha) => (ctx) => {
    const row = ctx.raw ? ctx.raw.row : 0;
    const hex = TAB10[row % 10];
    return hex + Math.round(alpha * 255).toString(16).padStart(2, "0");
  };
  const datasets = Object.entries(STATE_STYLE).map(([state, alpha]) => ({
    label: state === "starting" ? "loading" : state, data: bars[state], backgroundColor: colour(alpha),
    borderSkipped: false, barPercentage: 0.8, categoryPercentage: 1, grouped: false,
  }));
  const x = { type: "linear", min: now - span, max: now, ticks: { callback: (v) => new Date(v * 1000).toLocaleTimeString() } };
  const gutter = (scale) => { scale.width = 80; }; // the same left edge for both charts
  const total = Object.values(bars).reduce((n, b) => n + b.length, 0);
  $("#page-timeline").dataset.segments = total;
  if (!gantt) {
    gantt = new Chart($("#gantt"), {
      type: "bar",
      data: { labels: models, datasets },
      options: { indexAxis: "y", maintainAspectRatio: false, animation: false, parsing: { xAxisKey: "x", yAxisKey: "y" },
        scales: { x, y: { type: "category", labels: models, stacked: true, afterFit: gutter } },
        plugins: { legend: { labels: { generateLabels: () => Object.entries(STATE_STYLE).map(([s, a]) => ({ text: s === "starting" ? "loading" : s, fillStyle: `rgba(31,119,180,${a})`, strokeStyle: "transparent" })) } } } },
    });
  } else {
    gantt.data.labels = models;
    gantt.options.scales.y.labels = models;
    gantt.data.datasets.forEach((d, i) => { d.data = datasets[i].data; });
    gantt.options.scales.x.min = now - span; gantt.options.scales.x.max = now;
    gantt.update();
  }
  const points = S.queue.map(([t, n]) => ({ x: t, y: n }));
  if (points.length) points.push({ x: now, y: points[points.length - 1].y });
  if (!queueChart) {
    queueChart = new Chart($("#queue-chart"), {
      type: "line",
      data: { datasets: [{ label: "queue", data: points, stepped: "before", borderColor: "#000", borderWidth: 1, pointRadius: 0 }] },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false }, title: { display: true, text: "queue depth" } },
        scales: { x: { ...x }, y: { beginAtZero: true, ticks: { precision: 0 }, afterFit: gutter } } },
    });
  } else {
    queueChart.data.datasets[0].data = points;
    queueChart.options.scales.x.min = now - span; queueChart.options.scales.x.max = now;
    queueChart.update();
  }
  timelineDirty = false;
}
$("#timeline-window").onchange = drawTimeline;
setInterval(() => { if (S.page === "timeline") drawTimeline(); }, 1000);

// ------------------------------------------------------------------ scheduler

function renderScheduler() {
  const s = S.scheduler;
  if (!s) return;
  $("#sched-name").textContent = s.scheduler;
  const st = s.state;
  const card = (k, v) => el("div", { class: "card" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k }));
  const cards = [card("queued", st.queued), card("swapping", (st.swapping || []).join(", ") || "–"),
    card("in flight", Object.values(st.in_flight || {}).reduce((a, b) => a + b, 0))];
  if ("max_wait" in st) cards.push(card("max wait", fmtS(st.max_wait)));
  if ("plan_limit" in st) cards.push(card("plan limit", st.plan_limit ?? "–"));
  $("#sched-cards").replaceChildren(...cards);
  $("#queue-table tbody").replaceChildren(...s.queue.map((q) => el("tr", {},
    el("td", { class: "num", text: q.position }), el("td", { text: q.id }), el("td", { text: q.model }),
    el("td", { class: "num", text: fmtS(q.waited) }))));
  const why = {};
  for (const k of ["urgent", "claims", "load_estimate", "max_wait", "plan_limit", "reserved"]) if (k in st) why[k] = st[k];
  $("#sched-why").textContent = Object.keys(why).length ? JSON.stringify(why, null, 2) : `${s.scheduler} keeps no such state`;
}
function renderSwaps() {
  $("#swap-list").replaceChildren(...S.swaps.map((w) => el("li", {
    text: `${fmtTime(w.at)} ${w.event === "started" ? "swap to" : "swap finished:"} ${w.model}` +
      (w.evict && w.evict.length ? ` (evicting ${w.evict.join(", ")})` : "") + (w.error ? ` failed: ${w.error}` : ""),
  })));
}

// ------------------------------------------------------------------ logs

function renderLogs() {
  const sel = $("#log-source");
  const models = S.models.map((m) => `model:${m.id}`);
  const have = [...sel.options].map((o) => o.value).filter((v) => v.startsWith("model:"));
  if (have.join() !== models.join()) {
    for (const o of [...sel.options]) if (o.value.startsWith("model:")) o.remove();
    for (const v of models) sel.append(el("option", { value: v, text: `model ${v.slice(6)}` }));
  }
  if (sel.value.startsWith("model:")) return; // streamed by openLogStream
  const pre = $("#log-view");
  pre.textContent = S.logs[sel.value] || "";
  if ($("#log-follow").checked) pre.scrollTop = pre.scrollHeight;
}
let logAbort = null;
async function streamInto(pre, id, abort) {
  // a model's own log: /logs/stream/{id} (history first, then live), read as it arrives
  pre.textContent = "";
  try {
    const r = await api(`/logs/stream/${encodeURIComponent(id)}`, { signal: abort.signal });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pre.textContent = (pre.textContent + dec.decode(value, { stream: true })).slice(-LOG_LIMIT);
      pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) { if (e.name !== "AbortError") pre.textContent += `\n[${e.message}]`; }
}
$("#log-source").onchange = () => {
  if (logAbort) { logAbort.abort(); logAbort = null; }
  const v = $("#log-source").value;
  if (v.startsWith("model:")) { logAbort = new AbortController(); streamInto($("#log-view"), v.slice(6), logAbort); }
  else renderLogs();
};

// ------------------------------------------------------------------ what-if

async function loadWhatifInfo() {
  const info = await (await api("/api/whatif")).json();
  $("#whatif-info").textContent = info.recording
    ? `Recording to ${info.log}; the daemon runs ${info.current}.`
    : "This daemon records no traffic: start it with 'llamaswap serve --record FILE' to replay it here.";
  const sel = $("#whatif-form [name=scheduler]");
  if (!sel.options.length) {
    sel.replaceChildren(...info.schedulers.map((n) => el("option", { value: n, text: n })));
    sel.value = info.schedulers.find((n) => n !== info.current) || info.current;
  }
  $("#whatif-run").disabled = !info.recording;
}
$("#whatif-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  $("#whatif-state").textContent = "replaying in the simulator…";
  try {
    const job = await (await api("/api/whatif", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ minutes: Number(form.get("minutes")), scheduler: form.get("scheduler") }) })).json();
    S.whatifJob = job.id;
  } catch (e) { $("#whatif-state").textContent = e.message; }
};
async function loadWhatifJob(id) {
  if (String(id) !== String(S.whatifJob)) return;
  const job = await (await api(`/api/whatif/${id}`)).json();
  if (job.state === "failed") { $("#whatif-state").textContent = `failed: ${job.error}`; return; }
  $("#whatif-state").textContent = `${job.result.requests} requests replayed`;
  renderWhatif(job.result);
}
let cdfChart = null, waitChart = null;
function renderWhatif(result) {
  $("#whatif-result").hidden = false;
  const runs = result.runs;
  const rows = [["completed", (r) => r.completed], ["failed", (r) => r.failed], ["swaps", (r) => r.swaps],
    ["latency p50", (r) => fmtS(r.latency.p50)], ["latency p99", (r) => fmtS(r.latency.p99)],
    ["wait p50", (r) => fmtS(r.wait.p50)], ["wait p99", (r) => fmtS(r.wait.p99)]];
  $("#whatif-table thead").replaceChildren(el("tr", {}, el("th", {}), ...runs.map((r) => el("th", { text: r.label }))));
  $("#whatif-table tbody").replaceChildren(...rows.map(([k, f]) => el("tr", {}, el("td", { text: k }),
    ...runs.map((r) => el("td", { class: "num", text: f(r) })))));
  if (cdfChart) cdfChart.destroy();
  cdfChart = new Chart($("#whatif-cdf"), {
    type: "line",
    data: { datasets: runs.map((r, i) => ({ label: r.label, data: r.cdf.map(([x, y]) => ({ x, y })), borderColor: TAB10[i], stepped: "after", pointRadius: 0, borderWidth: 1.5 })) },
    options: { maintainAspectRatio: false, animation: false, plugins: { title: { display: true, text: "Latency CDF" } },
      scales: { x: { type: "logarithmic", title: { display: true, text: "latency (s)" } }, y: { min: 0, max: 1 } } },
  });
  const models = [...new Set(runs.flatMap((r) => Object.keys(r.per_model)))].sort();
  if (waitChart) waitChart.destroy();
  waitChart = new Chart($("#whatif-wait"), {
    type: "bar",
    data: { labels: models, datasets: runs.map((r, i) => ({ label: r.label, data: models.map((m) => (r.per_model[m] || {}).wait_p99 ?? 0), backgroundColor: TAB10[i] })) },
    options: { maintainAspectRatio: false, animation: false, plugins: { title: { display: true, text: "p99 wait per model (s)" } } },
  });
}

// ------------------------------------------------------------------ playground

$("#chat-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const model = $("#chat-model").value;
  const out = $("#chat-reply");
  out.textContent = "";
  $("#chat-meta").textContent = "";
  const started = performance.now();
  let first = null;
  try {
    const r = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true },
        messages: [{ role: "user", content: $("#chat-prompt").value }] }),
    });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "", usage = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const payload = line.slice(5).trim();
          if (payload === "[DONE]") continue;
          const chunk = JSON.parse(payload);
          if (chunk.usage) usage = chunk.usage;
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) { if (first === null) first = performance.now(); out.textContent += delta.content; }
        }
      }
    }
    const ms = performance.now() - started;
    $("#chat-meta").textContent = `${model}: first token ${first === null ? "–" : ((first - started) / 1000).toFixed(2) + " s"}, ` +
      `done in ${(ms / 1000).toFixed(2)} s` + (usage ? `, ${usage.completion_tokens} tokens` : "");
    out.dataset.done = "1";
  } catch (e) { out.textContent += `\n[${e.message}]`; }
};

// ------------------------------------------------------------------ start

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
connect();
show(location.hash.slice(1) || "models");
