// callkpi wallboard: reads GET /v1/stream (Server-Sent Events) and draws tiles
// or the agent leaderboard. No build step; common.js is loaded first.
//
// EventSource cannot send an Authorization header, and a token must never sit in
// a URL (proxies and logs keep URLs), so the stream is read with fetch() and
// parsed here; that also lets the page send Last-Event-ID itself on reconnect.
"use strict";

const STATES = ["available", "on_call", "wrap_up", "not_ready", "logged_out"];
const STATE_LABEL = {
  available: "Available", on_call: "On call", wrap_up: "Wrap-up",
  not_ready: "Not ready", logged_out: "Logged out",
};

const view = document.body.dataset.view;
const params = new URLSearchParams(location.search);
const team = params.get("team");

const entities = new Map(); // "kind:id" -> latest tile payload
let order = [];             // keys in the snapshot's order
let alerts = [];
let lastEventId = null;
let lastFrameAt = 0;        // Date.now() of the last frame of any kind
let figuresAt = null;       // the server's time of its last good read
let heartbeatS = 5;
let connected = false;
let problem = null;
let pipeline = null;        // how far behind the figures are (snapshot, heartbeat)
let limits = { states: {}, reasons: {} }; // time-in-state limits (config `wallboard`)
let slSeconds = 20;

// --- the feed -----------------------------------------------------------------
function streamUrl() {
  const q = new URLSearchParams();
  if (view === "agents") {
    q.set("kind", "agent");
    if (team) { q.set("team", team); q.append("entity", `team:${team}`); }
  } else if (team) {
    q.append("entity", `team:${team}`);
    q.set("kind", "queue");
    q.set("team", team);
  } else {
    q.append("entity", "center:all");
    q.set("kind", "team");
  }
  return `/v1/stream?${q}`;
}

function parseBlock(block) {
  const ev = { event: "message", data: [], id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
    else if (field === "id") ev.id = value;
  }
  return ev;
}

function handle(ev) {
  lastFrameAt = Date.now();
  if (ev.id) lastEventId = ev.id;
  const data = ev.data.length ? JSON.parse(ev.data.join("\n")) : null;
  if (ev.event === "snapshot") {
    entities.clear();
    order = data.entities.map((e) => `${e.kind}:${e.id}`);
    for (const e of data.entities) entities.set(`${e.kind}:${e.id}`, e);
    alerts = data.alerts;
    figuresAt = data.figures_at;
    heartbeatS = data.heartbeat_seconds;
    pipeline = data.pipeline;
    limits = data.limits || limits;
    slSeconds = data.sl_seconds ?? slSeconds;
  } else if (ev.event === "update") {
    const key = `${data.kind}:${data.id}`;
    if (!entities.has(key)) order.push(key);
    entities.set(key, data);
    figuresAt = new Date().toISOString();
  } else if (ev.event === "alerts") {
    alerts = data.items;
  } else if (ev.event === "pipeline") {
    pipeline = data;
  } else if (ev.event === "heartbeat") {
    figuresAt = data.figures_at;
    pipeline = data.pipeline;
  }
  render();
}

async function readStream(signal) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  const token = localStorage.getItem(TOKEN_KEY);
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const resp = await fetch(streamUrl(), { headers, cache: "no-store", signal });
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    askToken(resp.status === 401 && !token ? null : body.detail || `HTTP ${resp.status}`);
    return "auth";
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new Error(body.detail || `HTTP ${resp.status}`);
  }
  connected = true;
  setProblem(null);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      handle(parseBlock(block));
    }
  }
  return "closed";
}

async function run() {
  for (;;) {
    let outcome;
    try {
      outcome = await readStream(new AbortController().signal);
    } catch (err) {
      setProblem(`feed: ${err.message}`);
    }
    connected = false;
    render();
    if (outcome === "auth") return; // waits for a token
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// --- drawing ------------------------------------------------------------------
function setProblem(text) {
  problem = text;
  const box = document.getElementById("problem");
  box.hidden = !text;
  box.textContent = text || "";
}

function isStale() {
  if (!connected) return true;
  // two missed heartbeats: the connection is open but nothing comes through
  return Date.now() - lastFrameAt > 2.5 * heartbeatS * 1000;
}

function check(tile, field, windowSeconds) {
  return (tile.checks || []).find((c) => c.field === field && c.window_seconds === windowSeconds);
}

// The calls behind a tile's figure: its span (the last 15 minutes or today)
// and what the figure counts (/reports/calls, as the reports' cells).
function callsLink(t, span, filters = {}) {
  if (!t.windows) return null;
  const [from, to] = t.windows[span];
  const q = new URLSearchParams({ from, to });
  if (t.kind !== "center") q.set(t.kind, t.id);
  for (const [k, v] of Object.entries(filters)) q.set(k, String(v));
  return `/reports/calls?${q}`;
}

function fig(label, value, opts = {}) {
  const node = el(opts.href ? "a" : "div", { class: `fig${opts.hero ? " hero" : ""}` },
    el("span", { class: "label" }, label), el("span", { class: "value" }, value));
  if (opts.href) {
    node.href = opts.href;
    node.title = "the calls behind this figure";
  }
  node.dataset.field = opts.field || label;
  if (opts.check) {
    const c = opts.check;
    // red: under the line on enough calls to alert; amber: under it on fewer
    if (c.threshold !== null && c.value !== null) {
      node.classList.add(c.breached ? "bad" : c.crossed ? "thin" : "ok");
    }
    if (c.threshold !== null) {
      const line = c.field.endsWith("_seconds") ? secs(c.threshold) : pct(c.threshold);
      let text = `line ${line} (${c.schedule_class.replace("_", "-")})`;
      if (c.crossed && !c.breached) text += ` · ${c.calls} calls, alerts from ${c.min_calls}`;
      node.append(el("span", { class: "line" }, text));
    }
  }
  return node;
}

// Agents staffed against the agents the last half hour's load requires (and the
// schedule's): red when fewer are staffed than required.
function staffingFig(st, c) {
  const node = fig("Staffed / required 30m", `${dec1(st.staffed_agents)} / ${num(st.required_agents)}`,
    { field: "staffing", check: c });
  if (!c && st.required_agents !== null && st.staffed_agents !== null) {
    node.classList.add(st.staffed_agents < st.required_agents ? "thin" : "ok");
  }
  node.append(el("span", { class: "line" }, `scheduled ${dec1(st.scheduled_agents)}`));
  return node;
}

function tileNode(t) {
  const shown = new Set();
  const use = (field, win) => { shown.add(`${field}@${win}`); return check(t, field, win); };
  const title = el("h2", {}, t.name || t.id);
  title.append(el("small", {}, t.kind === "center" ? "center" : `${t.kind} ${t.id}`));
  const link = (span, filters) => callsLink(t, span, filters);
  const figs = el("div", { class: "figs" },
    fig("Answer rate 15m", pct(t.m15.answer_rate), { hero: true, field: "answer_rate_15m", check: use("answer_rate", 900), href: link("m15") }),
    fig("Today", pct(t.today.answer_rate), { field: "answer_rate_today", check: use("answer_rate", null), href: link("today") }),
    fig("Service level 15m", pct(t.m15.service_level), { field: "service_level_15m", check: use("service_level", 900), href: link("m15", { min_wait: slSeconds }) }),
    fig("In queue", num(t.live.in_queue), { field: "in_queue", href: link("today", { outcome: "in_queue" }) }),
    fig("Longest wait", mmss(t.live.longest_wait_seconds), { field: "longest_wait", href: link("today", { outcome: "in_queue" }) }),
    fig("ASA 15m", secs(t.m15.asa_seconds), { field: "asa_15m", check: use("asa_seconds", 900), href: link("m15", { outcome: "answered" }) }),
    fig("AHT today", mmss(t.today.aht_seconds), { field: "aht_today", href: link("today", { outcome: "answered" }) }),
    fig("FCR (provisional)", pct(t.today.fcr_rate_provisional), { field: "fcr_today", href: link("today", { fcr: "not_resolved" }) }),
    fig("CSAT today", pct(t.today.csat), { field: "csat_today", href: link("today") }),
  );
  if (t.staffing) figs.append(staffingFig(t.staffing, use("staffing_ratio", 1800)));
  const node = el("section", { class: "tile" }, title, figs);
  node.dataset.key = `${t.kind}:${t.id}`;
  if (t.trend) node.append(sparkline(t));
  if (t.live.oldest && t.live.oldest.length) node.append(oldestNode(t.live.oldest));
  if (t.live.agents) {
    const row = el("div", { class: "agents" });
    for (const s of STATES.slice(0, 4)) {
      const item = el("span", { class: `state ${s}` }, STATE_LABEL[s]);
      item.append(el("b", {}, String(t.live.agents[s])));
      item.dataset.state = s;
      row.append(item);
    }
    node.append(row);
  }
  // rules on other fields or windows than those shown: one line each
  const others = (t.checks || []).filter((c) => !shown.has(`${c.field}@${c.window_seconds}`));
  if (others.length) {
    const box = el("div", { class: "checks" });
    for (const c of others) {
      const v = c.field.endsWith("_seconds") ? secs(c.value) : pct(c.value);
      const line = c.field.endsWith("_seconds") ? secs(c.threshold) : pct(c.threshold);
      box.append(el("div", { class: c.breached ? "bad" : "" },
        `${c.rule}: ${c.field} ${c.window_seconds / 60}m ${v}, line ${line}`));
    }
    node.append(box);
  }
  if ((t.checks || []).some((c) => c.breached)) node.classList.add("breached");
  return node;
}

// Today's answer rate per quarter hour, with the line in force now: where the
// day went, beside the moment the figures show. Drawn as SVG (no library).
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function sparkline(t) {
  const values = t.trend.answer_rate;
  const slots = Math.max(values.length, 96); // a day of quarter hours (92 or 100 on DST days)
  const W = 700, H = 60;
  const x = (i) => ((i + 0.5) / slots) * W;
  const y = (v) => H - 4 - v * (H - 8);
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "spark", role: "img",
    "aria-label": "answer rate today per 15 minutes" });
  const c = check(t, "answer_rate", 900);
  if (c && c.threshold !== null) {
    box.append(svg("line", { x1: 0, x2: W, y1: y(c.threshold), y2: y(c.threshold), class: "spark-line" }));
  }
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
    // a dot per quarter hour (a lone one has no line to show it), red under the line
    const bad = c && c.threshold !== null && v < c.threshold;
    box.append(svg("circle", { cx: x(i), cy: y(v), r: bad ? 4 : 2.5, class: bad ? "spark-bad" : "spark-dot" }));
  });
  box.prepend(svg("path", { d, class: "spark-rate" }));
  const last = [...values].reverse().find((v) => v !== null);
  const wrap = el("div", { class: "trend" }, el("span", { class: "label" }, "Today per 15 min"), box);
  wrap.dataset.from = t.trend.from;
  wrap.dataset.values = JSON.stringify(values);
  wrap.dataset.last = last === undefined ? "" : pct(last);
  return wrap;
}

// The calls waiting longest, each counting up from its arrival (tick()).
function oldestNode(oldest) {
  const list = el("ol", { class: "oldest" });
  for (const w of oldest) {
    const wait = el("b", { class: "since" }, "");
    wait.dataset.since = w.offered_at;
    const item = el("li", {}, wait, ` ${w.queue_id}`);
    item.dataset.call = w.call_id;
    list.append(item);
  }
  countUp(list);
  return el("div", { class: "waiting" }, el("span", { class: "label" }, "Waiting longest"), list);
}

function countUp(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll("[data-since]")) {
    node.textContent = mmss((now - Date.parse(node.dataset.since)) / 1000);
  }
}

// The limit of an agent's state (a not-ready reason's own, if configured);
// null: not limited.
function limitOf(state, reason) {
  if (state === "not_ready" && reason && limits.reasons[reason] !== undefined) return limits.reasons[reason];
  return limits.states[state] ?? null;
}

function renderTiles() {
  const main = document.getElementById("tiles");
  main.replaceChildren(...order.filter((k) => entities.has(k)).map((k) => tileNode(entities.get(k))));
}

// What a deviation alert (kind agent, docs/qa.md) watches, as the marker says it
const CHANGE_LABEL = {
  avg_talk_seconds_change: "talk time", aht_seconds_change: "AHT", avg_hold_seconds_change: "hold",
  avg_acw_seconds_change: "wrap-up", rona_rate_change: "ring-no-answer",
  transfer_rate_change: "transfers", conversion_rate_change: "conversion",
  complaint_rate_change: "complaints", csat_change: "CSAT", fcr_rate_change: "FCR",
};

// A change from an agent's usual: −38.5%, +12.0%
const signedPct = (x) => (x === null || x === undefined ? "—" : `${x > 0 ? "+" : "−"}${pct(Math.abs(x))}`);

// A marker per firing deviation alert of the agent: which figure, how far from
// its usual, and the rule (for the quality team's listening sample, docs/qa.md).
function qaMarkers(agent) {
  return alerts.filter((a) => a.kind === "agent" && a.entity_id === agent).map((a) => {
    const label = CHANGE_LABEL[a.field] || a.field;
    const change = signedPct(a.observed_value);
    const mark = el("span", { class: "qa-flag" }, `⚑ ${label} ${change} vs usual`);
    const hours = Math.round(a.rule.window_seconds / 3600);
    mark.title = `${a.rule.id}: ${label} ${change} against this agent's own usual over the last `
      + `${hours} h, and unusual in its team (line ${signedPct(a.threshold)}); `
      + "its calls to hear: GET /v1/qa/sample";
    mark.dataset.field = a.field;
    return mark;
  });
}

function renderAgents() {
  const rows = [...entities.values()].filter((e) => e.kind === "agent");
  rows.sort((a, b) => (b.today.answered - a.today.answered) || a.id.localeCompare(b.id));
  const now = Date.now();
  document.getElementById("rows").replaceChildren(...rows.map((a, i) => {
    const since = a.live.since ? (now - Date.parse(a.live.since)) / 1000 : null;
    const state = a.live.state || "logged_out";
    const label = STATE_LABEL[state] || state;
    const badge = el("span", { class: `state ${state}` }, a.live.reason && state === "not_ready" ? `${label} · ${a.live.reason}` : label);
    const stateCell = el("td", {}, badge, since !== null && state !== "logged_out" ? ` ${mmss(since)}` : "");
    // past the state's limit (or the reason's): red, VICIdial-style
    const limit = limitOf(state, a.live.reason);
    if (limit !== null && since !== null && since >= limit) {
      stateCell.classList.add("over");
      stateCell.title = `over the ${mmss(limit)} limit for ${label.toLowerCase()}${a.live.reason ? ` (${a.live.reason})` : ""}`;
    }
    const who = el("td", {}, a.id, ...qaMarkers(a.id));
    const tr = el("tr", {}, el("td", {}, String(i + 1)), who, stateCell,
      el("td", {}, num(a.today.answered)), el("td", {}, mmss(a.today.aht_seconds)),
      el("td", {}, pct(a.today.fcr_rate_provisional)), el("td", {}, pct(a.today.csat)),
      el("td", {}, pct(a.today.occupancy)), el("td", {}, dec1(a.today.calls_per_hour)));
    tr.dataset.agent = a.id;
    return tr;
  }));
}

function renderBanner() {
  const keys = new Set(order);
  const mine = alerts.filter((a) => a.kind === "center" || keys.has(`${a.kind}:${a.entity_id}`));
  const banner = document.getElementById("banner");
  banner.hidden = mine.length === 0;
  banner.replaceChildren(el("ul", {}, ...mine.map((a) => {
    const v = a.field.endsWith("_seconds") ? secs(a.observed_value) : pct(a.observed_value);
    const line = a.field.endsWith("_seconds") ? secs(a.threshold) : pct(a.threshold);
    const since = a.started_at ? clock(new Date(a.started_at)) : "";
    const who = entities.get(`${a.kind}:${a.entity_id}`);
    let name = `${a.kind} ${a.entity_id}`;
    if (a.kind === "center" && who) name = who.name;
    else if (who && who.name && who.name !== a.entity_id) name = `${who.name} (${name})`;
    if (CHANGE_LABEL[a.field]) {  // a deviation alert: the figure against the agent's usual
      return el("li", {}, `ALERT ${name}: ${CHANGE_LABEL[a.field]} ${signedPct(a.observed_value)} vs usual (line ${signedPct(a.threshold)}) since ${since}`);
    }
    return el("li", {}, `ALERT ${name}: ${a.field} ${v} (line ${line}) since ${since}`);
  })));
}

// The figures are right but late: events wait at the broker that the workers have
// not counted yet (a stalled worker, a catch-up), or the broker cannot be asked.
function renderBehind() {
  const box = document.getElementById("behind");
  const p = pipeline;
  if (!p || !p.behind) {
    box.hidden = true;
    return;
  }
  let text = `Figures are ${mmss(p.behind_seconds)} behind (${p.backlog} records waiting)`;
  if (p.stalled && p.stalled.length) {
    const s = p.stalled[0];
    text += `: the worker has made no progress on ${s.stage} partition ${s.partition} for ${mmss(s.seconds)}`;
  }
  if (p.broker) text = `Cannot tell how current the figures are: ${p.broker}`;
  box.textContent = text;
  box.hidden = false;
}

function render() {
  renderBehind();
  const stale = isStale();
  document.body.classList.toggle("stale", stale);
  const feed = document.getElementById("feed");
  feed.className = `feed ${stale ? "stale" : "live"}`;
  feed.textContent = stale ? "STALE" : "live";
  document.getElementById("updated").textContent = figuresAt ? clock(new Date(figuresAt)) : "—";
  const head = entities.get(order[0]);
  document.getElementById("title").textContent = view === "agents"
    ? `Agents${team ? ` — ${head && head.kind === "team" ? head.name : team}` : ""}`
    : (head ? head.name : "Wallboard");
  if (view === "agents") renderAgents(); else renderTiles();
  renderBanner();
}

function tick() {
  document.getElementById("clock").textContent = clock(new Date());
  const stale = isStale();
  if (stale !== document.body.classList.contains("stale")) render();
  if (view === "agents" && entities.size) renderAgents(); // time in state counts up
  else countUp();
}

setUpLogin(run);
const link = document.getElementById(view === "agents" ? "tiles-link" : "agents-link");
if (team) link.href += `?team=${encodeURIComponent(team)}`;

setInterval(tick, 1000);
tick();
run();
