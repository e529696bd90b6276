// callkpi calls: the calls behind a figure, from GET /v1/calls with this
// page's own parameters (from, to, queue/team/agent, outcome, min_wait, fcr),
// 200 a page; the CSV holds every call of the range. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const FILTERS = ["from", "to", "queue", "team", "agent", "outcome", "min_wait", "fcr"];
const PAGE = 200;
let cursor = null;
let shown = 0;

const COLUMNS = [
  ["offered_at", "Offered", (c) => c.offered_at.slice(11, 19)],
  ["queue_id", "Queue", (c) => c.queue_id],
  ["outcome", "Outcome", (c) => c.outcome || "—"],
  ["reason", "Why it ended", (c) => [c.reason, c.ended_by].filter(Boolean).join(" · ") || "—"],
  ["wait_seconds", "Wait", (c) => secs(c.wait_seconds)],
  ["talk_seconds", "Talk", (c) => mmss(c.talk_seconds)],
  ["hold_seconds", "Hold", (c) => secs(c.hold_seconds)],
  ["acw_seconds", "After-call work", (c) => secs(c.acw_seconds)],
  ["agents", "Agents", (c) => c.agents.map((a) => a.agent_id).join(", ") || "—"],
  ["transferred", "Transferred", (c) => (c.transferred ? "yes" : "")],
  ["fcr", "FCR", (c) => c.fcr || "—"],
  ["survey_score", "Survey", (c) => num(c.survey_score)],
  ["customer", "Customer", (c) => (c.customer ? c.customer.slice(0, 10) : "—")],
  ["call_id", "Call id", (c) => c.call_id],
];

function query(extra = {}) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (params.get(k)) q.set(k, params.get(k));
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}

// "abandoned calls, team billing, waited 20 s or more, 2026-12-01 10:00–10:30"
function describe() {
  const from = params.get("from") || "";
  const to = params.get("to") || "";
  const parts = [params.get("outcome") ? `${params.get("outcome").replace(/_/g, " ")} calls` : "Calls"];
  for (const k of ["team", "queue", "agent"]) if (params.get(k)) parts.push(`${k} ${params.get(k)}`);
  if (params.get("min_wait")) parts.push(`waited ${params.get("min_wait")} s or more`);
  if (params.get("fcr")) parts.push(`FCR ${params.get("fcr").replace("_", " ")}`);
  const sameDay = from.slice(0, 10) === to.slice(0, 10) || to.slice(11, 16) === "00:00";
  parts.push(sameDay ? `${from.slice(0, 10)} ${from.slice(11, 16)}–${to.slice(11, 16)}` : `${from.slice(0, 16)} – ${to.slice(0, 16)}`);
  return parts.join(", ");
}

function setProblem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

async function more() {
  const extra = { limit: String(PAGE) };
  if (cursor) extra.cursor = cursor;
  let body;
  try {
    body = await (await apiGet(`/v1/calls?${query(extra)}`)).json();
  } catch (err) {
    if (!(err instanceof AuthError)) setProblem(`calls: ${err.message}`);
    return;
  }
  setProblem(null);
  const tbody = $("table").querySelector("tbody");
  for (const c of body.items) {
    const tr = el("tr", {}, ...COLUMNS.map(([name, , f]) => {
      const td = el("td", { class: name === "offered_at" || name === "call_id" || name === "agents" ? "u-text" : "" }, f(c));
      td.dataset.col = name;
      return td;
    }));
    tr.dataset.call = c.call_id;
    tr.dataset.outcome = c.outcome || "";
    tbody.append(tr);
  }
  shown += body.items.length;
  cursor = body.next_cursor;
  $("more").hidden = !cursor;
  $("count").textContent = shown
    ? `${shown} call${shown === 1 ? "" : "s"}${cursor ? " so far" : ""}. Times are the center's.`
    : "No calls. Call records are kept as long as call state (call_state_retention_days, 14 by default).";
}

function start() {
  cursor = null;
  shown = 0;
  $("table").querySelector("tbody").replaceChildren();
  more();
}

$("what").textContent = describe();
document.title = `callkpi calls: ${describe()}`;
$("table").querySelector("thead").replaceChildren(
  el("tr", {}, ...COLUMNS.map(([, label]) => el("th", { scope: "col" }, label))));
$("more").addEventListener("click", more);
$("csv").addEventListener("click", () => {
  download(`/v1/calls?${query({ format: "csv" })}`).catch((err) => {
    if (!(err instanceof AuthError)) setProblem(`download: ${err.message}`);
  });
});
$("print").addEventListener("click", () => window.print());
if (document.referrer && new URL(document.referrer).pathname === "/reports") $("back").href = document.referrer;
setUpLogin(start);
start();
